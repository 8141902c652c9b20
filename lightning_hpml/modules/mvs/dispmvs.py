"""DispMVS: depth-range-free multi-view stereo from epipolar disparity flow.

Paper: Q. Yan, Q. Wang, K. Zhao, B. Li, X. Chu, F. Deng, "Rethinking Disparity: A Depth Range Free Multi-View Stereo
Based on Disparity", AAAI 2023 (arXiv 2211.16905). Official code: https://github.com/Yannnnnnnnnnnn/DispMVS_release
(``model.py``, ``extractor.py``, ``corr.py``, ``update.py``).

Instead of sweeping depth hypotheses through a 3-D cost volume, DispMVS matches each reference pixel along its
epipolar line in every source view (:class:`~lightning_hpml.modules.layers.epipolar_flow.EpipolarFlow`): a GRU
(:class:`~lightning_hpml.modules.mvs.dispmvs_update.UpdateBlock`, weights shared by the source views, one hidden state
per view) refines a scalar flow along the line from a 2-D cost sampled around the current match; each view's match is
triangulated into an inverse depth, and the views are fused by a softmax over their predicted confidences. Between
iterations the fused depth is re-projected into every view to restart its flow. Coarse to fine: 8 iterations on the
1/16 grid (starting from a random depth), then 2 on the 1/4 grid (starting from the coarse result); every iteration
is convex-upsampled by 4.

How the depth range is used (as the official code): only (1) to draw the random initial depth, uniform in inverse
depth between ``1/d_max`` and ``1/d_min``, and (2) to normalise inverse depth to [0, 1] for fusion and the loss
(depths outside the range are clipped to it). No depth hypotheses are sampled from it, so the cost does not depend on
how wide it is.

Inputs: ``images`` (B, V, 3, H, W) in [0, 1] (view 0 = reference), ``intrinsics`` (B, V, 3, 3) in pixels of those
images, ``extrinsics`` (B, V, 4, 4) world-to-camera, ``depth_range`` (B, 2) = (d_min, d_max). H and W must be
multiples of 16. Outputs (dict): ``depth`` (B, 1, H, W); ``confidence`` (B, 1, H, W): the softmax weight of source
views whose own triangulated depth agrees with the fused one to within ``agreement_tolerance`` of the normalised
inverse-depth range (the official code returns no confidence); ``coarse`` and ``fine``: lists of the fused
normalised inverse depth after each iteration, at 1/4 and full resolution (for the loss); ``init_depth`` (1/16 grid).

Differences from the official code (all deliberate):

* Epipolar direction from the projections of depth ``d`` and ``2d`` (official ``2d + 10`` scene units; the line is
  the same); intrinsics for the 1/4 and 1/16 grids keep pixel centres aligned (``c' = (c + 0.5) / s - 0.5``;
  official ``K / s``) and pooled cost levels sample at ``(x + 0.5) / 2^p - 0.5`` (official ``x / 2^p``).
* Triangulation by least squares over both image axes instead of picking the steeper axis; inverse depth is not
  made positive with ``abs`` but clipped to the range.
* Convex upsampling replicates border values instead of zero padding.
* ``width`` scales all channel counts (1.0 = official); ``modulated_context`` switches the context heads to DCNv2
  (official: DCNv1); the deformable offsets start at zero.
* In eval mode the random initial depth is drawn from a generator seeded with ``eval_seed``, so predictions are
  reproducible (the official draws from the global generator).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.datamodules.formats.mvs_cameras import downsample_intrinsics
from lightning_hpml.modules.layers.convex_upsampling import convex_upsample
from lightning_hpml.modules.layers.epipolar_flow import EpipolarFlow
from lightning_hpml.modules.mvs.dispmvs_encoder import DispMVSEncoder, scaled
from lightning_hpml.modules.mvs.dispmvs_update import UPSAMPLE_FACTOR, UpdateBlock
from lightning_hpml.modules.registry import register_model

__all__ = ["DispMVS", "dispmvs", "dispmvs_tiny", "grid_intrinsics", "normalised_inverse_depth"]


def grid_intrinsics(intrinsics: Tensor, stride: int) -> Tensor:
    """Intrinsics (..., 3, 3) for a feature grid of stride ``stride`` whose cells are centred on input-pixel blocks."""
    return downsample_intrinsics(intrinsics, stride)


def normalised_inverse_depth(depth: Tensor, depth_range: Tensor) -> Tensor:
    """``(1/d - 1/d_max) / (1/d_min - 1/d_max)`` clipped to [0, 1]; ``depth_range`` (B, 2) broadcasts over (B, ...)."""
    near, far = _range(depth_range, depth.ndim)
    return ((1.0 / depth.clamp_min(1e-9) - 1.0 / far) / (1.0 / near - 1.0 / far)).clamp(0.0, 1.0)


def _range(depth_range: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
    shape = (-1,) + (1,) * (ndim - 1)
    return depth_range[:, 0].reshape(shape), depth_range[:, 1].reshape(shape)


def _depth_from_normalised(normalised: Tensor, depth_range: Tensor) -> Tensor:
    near, far = _range(depth_range, normalised.ndim)
    return 1.0 / (1.0 / far + normalised * (1.0 / near - 1.0 / far))


def _inverse_depth_to_normalised(inverse: Tensor, depth_range: Tensor) -> Tensor:
    near, far = _range(depth_range, inverse.ndim)
    return ((inverse - 1.0 / far) / (1.0 / near - 1.0 / far)).clamp(0.0, 1.0)


class DispMVS(nn.Module):
    """Args:
    width: Channel multiplier (1.0 = the official layer plan, 10,444,838 parameters).
    coarse_iterations, fine_iterations: GRU iterations on the 1/16 and 1/4 grids (official ``--iter 2 8``).
    coarse_levels, coarse_radius, fine_levels, fine_radius: Cost pyramid levels and radius (4/4 and 2/2).
    modulated_context: DCNv2 instead of DCNv1 in the context heads.
    agreement_tolerance: Normalised inverse-depth tolerance of the ``confidence`` output.
    eval_seed: Seed of the random initial depth in eval mode (``None``: the global generator).
    """

    size_divisor = 16

    def __init__(
        self,
        width: float = 1.0,
        coarse_iterations: int = 8,
        fine_iterations: int = 2,
        coarse_levels: int = 4,
        coarse_radius: int = 4,
        fine_levels: int = 2,
        fine_radius: int = 2,
        modulated_context: bool = False,
        agreement_tolerance: float = 0.01,
        eval_seed: int | None = 0,
    ) -> None:
        super().__init__()
        if coarse_iterations < 1 or fine_iterations < 0:
            raise ValueError(
                f"need coarse_iterations >= 1 and fine_iterations >= 0, got {coarse_iterations}, {fine_iterations}"
            )
        self.iterations = (coarse_iterations, fine_iterations)
        self.levels, self.radius = (coarse_levels, fine_levels), (coarse_radius, fine_radius)
        self.agreement_tolerance, self.eval_seed = agreement_tolerance, eval_seed
        self.hidden = (scaled(128, width), scaled(96, width))  # (1/16, 1/4)
        self.feature_net = DispMVSEncoder((self.hidden[1], self.hidden[0]), "instance", width=width)
        self.context_net = DispMVSEncoder(
            (2 * self.hidden[1], 2 * self.hidden[0]), "batch", deformable=True, modulated=modulated_context, width=width
        )
        self.updates = nn.ModuleList(
            UpdateBlock(self.hidden[i], self.levels[i] * (2 * self.radius[i] + 1), width) for i in range(2)
        )

    def _initial_depth(self, shape: tuple[int, ...], depth_range: Tensor) -> Tensor:
        generator = None
        if not self.training and self.eval_seed is not None:
            generator = torch.Generator(device=depth_range.device).manual_seed(self.eval_seed)
        uniform = torch.rand(shape, generator=generator, device=depth_range.device)
        return _depth_from_normalised(uniform, depth_range.float())

    def forward(
        self,
        images: Tensor,
        intrinsics: Tensor,
        extrinsics: Tensor,
        depth_range: Tensor,
        init_depth: Tensor | None = None,
    ) -> dict[str, Tensor | list[Tensor]]:
        batch, views, _, height, width = images.shape
        if views < 2:
            raise ValueError(f"DispMVS needs a reference and at least one source view, got {views} view(s)")
        if height % 16 or width % 16 or min(height, width) < 16 * 2 ** (self.levels[0] - 1):
            raise ValueError(
                f"DispMVS needs H and W multiples of 16 and at least {16 * 2 ** (self.levels[0] - 1)} "
                f"(for {self.levels[0]} cost levels on the 1/16 grid), got {height}x{width}"
            )
        depth_range = depth_range.float()
        if not ((depth_range[:, 0] > 0) & (depth_range[:, 1] > depth_range[:, 0])).all():
            raise ValueError(
                f"depth_range must hold 0 < d_min < d_max per sample, got {depth_range.tolist()} (a camera file whose "
                "second depth field is an interval read as a maximum, or the reverse?)"
            )
        features4, features16 = self.feature_net(images.flatten(0, 1) * 2.0 - 1.0)
        features4 = features4.unflatten(0, (batch, views))
        features16 = features16.unflatten(0, (batch, views))
        context4, context16 = self.context_net(images[:, 0] * 2.0 - 1.0)
        if init_depth is None:
            init_depth = self._initial_depth((batch, 1, height // 16, width // 16), depth_range)
        coarse, confidence = self._stage(0, features16, context16, intrinsics, extrinsics, init_depth, depth_range, 16)
        fine_init = _depth_from_normalised(coarse[-1].detach(), depth_range)
        fine = []
        if self.iterations[1] > 0:
            fine, confidence = self._stage(1, features4, context4, intrinsics, extrinsics, fine_init, depth_range, 4)
            depth = _depth_from_normalised(fine[-1], depth_range)
        else:  # coarse stage only: its 1/4-resolution output, brought to full size
            depth = F.interpolate(fine_init, scale_factor=UPSAMPLE_FACTOR, mode="nearest")
            confidence = F.interpolate(confidence, scale_factor=UPSAMPLE_FACTOR, mode="nearest")
        return {"depth": depth, "confidence": confidence, "coarse": coarse, "fine": fine, "init_depth": init_depth}

    def _stage(
        self,
        index: int,
        features: Tensor,
        context: Tensor,
        intrinsics: Tensor,
        extrinsics: Tensor,
        init_depth: Tensor,
        depth_range: Tensor,
        stride: int,
    ) -> tuple[list[Tensor], Tensor]:
        batch, views = features.shape[:2]
        sources = views - 1
        h, w = features.shape[-2:]

        def per_pair(x: Tensor) -> Tensor:  # reference-view tensor -> one copy per source view
            return x.repeat_interleave(sources, 0)

        k = grid_intrinsics(intrinsics.float(), stride)
        geometry = EpipolarFlow(
            per_pair(k[:, 0]),
            per_pair(extrinsics[:, 0]),
            k[:, 1:].flatten(0, 1),
            extrinsics[:, 1:].flatten(0, 1),
            per_pair(init_depth),
            features[:, 1:].flatten(0, 1),
            self.levels[index],
            self.radius[index],
        )
        hidden, context = context.split([self.hidden[index], context.shape[1] - self.hidden[index]], 1)
        hidden, context = per_pair(torch.tanh(hidden)), per_pair(torch.relu(context))
        reference, pair_range = per_pair(features[:, 0]), per_pair(depth_range)
        flow = torch.zeros(batch * sources, 1, h, w, device=features.device)
        fused_per_iteration = []
        for iteration in range(self.iterations[index]):
            flow = flow.detach()
            cost = geometry.cost(reference, flow)
            hidden, delta, confidence, mask = self.updates[index](hidden, context, cost.to(hidden.dtype), flow)
            flow = flow + delta.float()
            inverse = _inverse_depth_to_normalised(geometry.inverse_depth(flow), pair_range)
            inverse = convex_upsample(inverse, mask.float(), UPSAMPLE_FACTOR).unflatten(0, (batch, sources))
            weights = torch.softmax(
                convex_upsample(confidence.float(), mask.float(), UPSAMPLE_FACTOR).unflatten(0, (batch, sources)), 1
            )
            fused = (weights * inverse).sum(1)  # (B, 1, 4h, 4w)
            fused_per_iteration.append(fused)
            if iteration < self.iterations[index] - 1:
                coarse = F.interpolate(fused, size=(h, w), mode="nearest")
                flow = geometry.flow_from_depth(per_pair(_depth_from_normalised(coarse, depth_range)))
        agreement = (weights * ((inverse - fused[:, None]).abs() < self.agreement_tolerance)).sum(1)
        return fused_per_iteration, agreement.detach()


@register_model
def dispmvs(**kwargs) -> DispMVS:
    """The official configuration (channels as the official code, 8 + 2 iterations)."""
    return DispMVS(**kwargs)


@register_model
def dispmvs_tiny(**kwargs) -> DispMVS:
    """Quarter-width DispMVS for CPU tests and the synthetic demo."""
    return DispMVS(**{"width": 0.25, **kwargs})
