"""EASNet — Wang, Shi, Chu et al., "EASNet: Searching Elastic and Accurate Network Architecture for Stereo Matching",
ECCV 2022, arXiv:2207.09796. Official code: https://github.com/HKBU-HPML/EASNet (``ofa/stereo_matching``; built on
Once-for-All, MIT-licensed, and AANet). Reimplemented from the facts in ``shared/reference/stereo-models-and-
datasets.md`` and the official sources; no code copied.

Architecture: AANet with an elastic Once-for-All feature extractor. Four stages of MBConv blocks give features at
1/3, 1/6, 1/12, 1/24; correlation volumes with 64/32/16/8 candidates; six AANet adaptive-aggregation modules (the
last three with modulated deformable convolutions); soft-argmin per scale; two StereoDRNet refinements (1/2, full).
Elastic dimensions: depthwise kernel ``ks`` in {3, 5, 7} and expand ratio ``e`` in {2, 4, 6, 8} per block, depth
``d`` in {2, 3, 4} per stage, number of scales ``s`` in {2, 3, 4}. The supernet has exactly 5,078,506 parameters
(features 3,401,360 incl. 11,296 kernel-transform matrices; aggregation 1,451,704; refinement 225,442).

Checked against the official ``OFAAANet`` built on CPU (its CUDA deformable conv replaced by torchvision's): with
weights converted by :func:`checkpoint_filter_fn` (all 1,564 state-dict entries) and ``official_warp=True``, all
pyramid outputs agree to 6e-5 px in eval mode for the largest and random sub-networks at 96x192 (train mode: 4e-4 px,
identical BatchNorm running statistics), and extracted sub-networks have the official parameter counts.

Deliberate differences from the official code:

- ImageNet mean/std normalisation happens inside the model (inputs in [0, 1]; the official data provider
  normalises); refinement sees the normalised images, as in the official pipeline.
- Outputs are a dict: ``disparity`` ``(B, 1, H, W)`` and ``pyramid``, the list of all predictions (coarsest first,
  each ``(B, 1, h, w)`` in pixels of its own resolution) that the loss supervises; the official returns the list.
- :meth:`EASNet.extract_subnet` returns :class:`EASNetSubnet` (explicit feature stages). By default it drops the
  final 1x1 convolutions of removed scales, which the official ``get_active_subnet`` keeps although they are unused
  (344 parameters for ``s = 2``); ``keep_unused_heads=True`` reproduces the official count (782,158 for K3 E2 D2 S2).
- :func:`reestimate_bn` uses cumulative-average BatchNorm updates over the given batches (the official computes
  each layer's mean/variance with hooks); both give the average of per-batch statistics.
- Warping (refinement) and deformable convolutions are pure PyTorch/torchvision; see ``refinement.py`` and
  ``aggregation.py`` for their differences.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.registry import register_model
from lightning_hpml.modules.stereo.easnet.aggregation import AdaptiveAggregation
from lightning_hpml.modules.stereo.easnet.cost_volume import CostVolumePyramid
from lightning_hpml.modules.stereo.easnet.estimation import soft_argmin
from lightning_hpml.modules.stereo.easnet.feature_extractor import ElasticFeatureExtractor, FeatureExtractor
from lightning_hpml.modules.stereo.easnet.ofa_blocks import DynamicMBConv
from lightning_hpml.modules.stereo.easnet.refinement import StereoDRNetRefinement

__all__ = ["EASNet", "EASNetSubnet", "SubnetConfig", "checkpoint_filter_fn", "reestimate_bn"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_DEPTH = 4
NUM_STAGES = 4
NUM_BLOCKS = MAX_DEPTH * NUM_STAGES


@dataclass(frozen=True)
class SubnetConfig:
    """A sub-network: per-block kernel sizes and expand ratios (16 each), per-stage depths (4) and the scale count.

    Use :meth:`make` to broadcast scalars.
    """

    ks: tuple[int, ...]
    e: tuple[float, ...]
    d: tuple[int, ...]
    s: int

    @classmethod
    def make(cls, ks: int | Sequence[int], e: float | Sequence[float], d: int | Sequence[int], s: int) -> SubnetConfig:
        return cls(_expand("ks", ks, NUM_BLOCKS), _expand("e", e, NUM_BLOCKS), _expand("d", d, NUM_STAGES), int(s))

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def active_blocks(self) -> list[int]:
        """Indices (into the 16 blocks) of the blocks this sub-network uses."""
        return [stage * MAX_DEPTH + i for stage in range(self.s) for i in range(self.d[stage])]

    def canonical(self) -> SubnetConfig:
        """Same network with the settings of unused blocks replaced by the first used value (for deduplication)."""
        used = set(self.active_blocks())
        ks = tuple(k if i in used else 0 for i, k in enumerate(self.ks))
        e = tuple(x if i in used else 0 for i, x in enumerate(self.e))
        d = tuple(x if i < self.s else 0 for i, x in enumerate(self.d))
        return SubnetConfig(ks, e, d, self.s)


def _expand(name: str, value: Any, length: int) -> tuple:
    if isinstance(value, (int, float)):
        return (value,) * length
    values = tuple(value)
    if len(values) != length:
        raise ValueError(f"`{name}` must be a scalar or have {length} entries, got {len(values)}: {values!r}")
    return values


class _EASNetBase(nn.Module):
    """Everything after the feature extractor, shared by the supernet and its plain sub-networks."""

    def __init__(self, max_disp: int, num_scales: int, normalize_input: bool, official_warp: bool = False) -> None:
        super().__init__()
        if max_disp < 24 or max_disp % 3:
            raise ValueError(f"`max_disp` must be a multiple of 3 and >= 24, got {max_disp!r}")
        self.max_disp = max_disp
        self.normalize_input = normalize_input
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.cost_volume = CostVolumePyramid(max_disp // 3)
        self.aggregation = AdaptiveAggregation(max_disp // 3, num_scales)
        self.official_warp = official_warp
        self.refinement = nn.ModuleList([StereoDRNetRefinement(official_warp=official_warp) for _ in range(2)])

    features: nn.Module

    def forward(self, left: Tensor, right: Tensor) -> dict[str, Any]:
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
            raise ValueError(f"left/right must both be (B, 3, H, W), got {tuple(left.shape)} and {tuple(right.shape)}")
        if self.normalize_input:
            left, right = (left - self.mean) / self.std, (right - self.mean) / self.std
        costs = self.cost_volume(self.features(left), self.features(right))
        aggregated = self.aggregation(costs)
        pyramid = [soft_argmin(volume) for volume in reversed(aggregated)]  # coarsest first
        disparity = pyramid[-1]
        for i, refine in enumerate(self.refinement):
            scale = 0.5 ** (len(self.refinement) - 1 - i)
            if scale == 1.0:
                l_img, r_img = left, right
            else:
                l_img = F.interpolate(left, scale_factor=scale, mode="bilinear", align_corners=False)
                r_img = F.interpolate(right, scale_factor=scale, mode="bilinear", align_corners=False)
            disparity = refine(disparity, l_img, r_img)
            pyramid.append(disparity)
        return {"disparity": disparity, "pyramid": pyramid}


class EASNet(_EASNetBase):
    """The EASNet elastic supernet.

    Args:
        kernel_sizes: Selectable depthwise kernel sizes (``(7,)`` builds no transform matrices: the first,
            "large" training stage of the official recipe).
        expand_ratios: Selectable expand ratios.
        depths: Selectable blocks per stage (the maximum is built).
        scales: Selectable numbers of pyramid scales (the maximum, at most 4, is built).
        max_disp: Full-resolution disparity range (192); the 1/3-scale volume has ``max_disp // 3`` candidates.
        normalize_input: Apply ImageNet mean/std to the [0, 1] inputs.
        official_warp: Warp in refinement exactly as the official code (half-pixel inconsistent; use it with
            weights converted by :func:`checkpoint_filter_fn`).

    Forward inputs ``left``, ``right``: ``(B, 3, H, W)`` in [0, 1] with ``H``, ``W`` divisible by
    :attr:`size_divisor`. Returns ``{"disparity": (B, 1, H, W), "pyramid": [coarsest, ..., full resolution]}``
    (``s + 2`` predictions for ``s`` active scales).
    """

    def __init__(
        self,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        expand_ratios: Sequence[float] = (2, 4, 6, 8),
        depths: Sequence[int] = (2, 3, 4),
        scales: Sequence[int] = (2, 3, 4),
        max_disp: int = 192,
        normalize_input: bool = True,
        official_warp: bool = False,
    ) -> None:
        self.kernel_sizes = sorted({int(k) for k in kernel_sizes})
        self.expand_ratios = sorted(set(expand_ratios))
        self.depths = sorted({int(d) for d in depths})
        self.scales = sorted({int(s) for s in scales})
        for name, values, low, high in (
            ("kernel_sizes", self.kernel_sizes, 1, 15),
            ("depths", self.depths, 1, MAX_DEPTH),
            ("scales", self.scales, 1, NUM_STAGES),
        ):
            if not values or values[0] < low or values[-1] > high:
                raise ValueError(f"`{name}` must be non-empty values in [{low}, {high}], got {values!r}")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"`kernel_sizes` must be odd, got {self.kernel_sizes!r}")
        if not self.expand_ratios or self.expand_ratios[0] <= 0:
            raise ValueError(f"`expand_ratios` must be positive, got {self.expand_ratios!r}")
        super().__init__(max_disp, max(self.scales), normalize_input, official_warp)
        self.features = ElasticFeatureExtractor(self.kernel_sizes, self.expand_ratios, MAX_DEPTH, NUM_STAGES)
        self.size_divisor = 3 * 2 ** (NUM_STAGES - 1)
        self.set_max_net()

    # ---------------------------------------------------------------- sub-network selection
    def _blocks(self) -> list[DynamicMBConv]:
        return [block.conv for block in self.features.blocks]

    @property
    def max_config(self) -> SubnetConfig:
        return SubnetConfig.make(self.kernel_sizes[-1], self.expand_ratios[-1], self.depths[-1], self.scales[-1])

    @property
    def min_config(self) -> SubnetConfig:
        return SubnetConfig.make(self.kernel_sizes[0], self.expand_ratios[0], self.depths[0], self.scales[0])

    def set_max_net(self) -> None:
        self.set_active_subnet(config=self.max_config)

    def set_active_subnet(
        self,
        ks: int | Sequence[int] | None = None,
        e: float | Sequence[float] | None = None,
        d: int | Sequence[int] | None = None,
        s: int | None = None,
        config: SubnetConfig | None = None,
    ) -> None:
        """Activate a sub-network; ``None`` keeps a dimension's current setting. ``config`` sets all four."""
        if config is not None:
            ks, e, d, s = config.ks, config.e, config.d, config.s
        if ks is not None:
            values = _expand("ks", ks, NUM_BLOCKS)
            _check_choices("ks", values, self.kernel_sizes)
            for block, k in zip(self._blocks(), values):
                block.active_kernel_size = int(k)
        if e is not None:
            values = _expand("e", e, NUM_BLOCKS)
            _check_choices("e", values, self.expand_ratios)
            for block, x in zip(self._blocks(), values):
                block.active_expand_ratio = x
        if d is not None:
            values = _expand("d", d, NUM_STAGES)
            _check_choices("d", values, self.depths)
            self.features.active_depths = [int(x) for x in values]
        if s is not None:
            _check_choices("s", (s,), self.scales)
            self.features.active_scales = int(s)

    @property
    def active_config(self) -> SubnetConfig:
        blocks = self._blocks()
        return SubnetConfig(
            tuple(b.active_kernel_size for b in blocks),
            tuple(b.active_expand_ratio for b in blocks),
            tuple(self.features.active_depths),
            self.features.active_scales,
        )

    def sample_active_subnet(
        self,
        kernel_sizes: Sequence[int] | None = None,
        expand_ratios: Sequence[float] | None = None,
        depths: Sequence[int] | None = None,
        scales: Sequence[int] | None = None,
        rng: random.Random | None = None,
    ) -> SubnetConfig:
        """Sample (uniformly per block/stage) and activate a sub-network; ``None`` choices mean the full lists."""
        rng = rng if rng is not None else random.Random()
        ks_c, e_c = kernel_sizes or self.kernel_sizes, expand_ratios or self.expand_ratios
        d_c, s_c = depths or self.depths, scales or self.scales
        config = SubnetConfig(
            tuple(rng.choice(list(ks_c)) for _ in range(NUM_BLOCKS)),
            tuple(rng.choice(list(e_c)) for _ in range(NUM_BLOCKS)),
            tuple(rng.choice(list(d_c)) for _ in range(NUM_STAGES)),
            rng.choice(list(s_c)),
        )
        self.set_active_subnet(config=config)
        return config

    def extract_subnet(self, config: SubnetConfig | None = None, keep_unused_heads: bool = False) -> EASNetSubnet:
        """A plain :class:`EASNetSubnet` for ``config`` (default: the active one) with the weights copied.

        The supernet's active sub-network is restored afterwards. BatchNorm statistics are the supernet's; call
        :func:`reestimate_bn` on training batches before evaluating a sub-network that is not the largest.
        """
        previous = self.active_config
        if config is not None:
            self.set_active_subnet(config=config)
        try:
            s = self.features.active_scales
            subnet = EASNetSubnet.__new__(EASNetSubnet)
            _EASNetBase.__init__(subnet, self.max_disp, s, self.normalize_input, self.official_warp)
            subnet.config = self.active_config
            subnet.features = self.features.get_active_subnet()
            subnet.cost_volume = copy.deepcopy(self.cost_volume)
            subnet.aggregation = copy.deepcopy(self.aggregation)
            subnet.aggregation.clip_scales(s, keep_final_convs=keep_unused_heads)
            subnet.refinement = copy.deepcopy(self.refinement)
            subnet.size_divisor = 3 * 2 ** (s - 1)
            subnet.to(device=self.mean.device)
        finally:
            self.set_active_subnet(config=previous)
        return subnet

    @torch.no_grad()
    def reorganize_middle_weights(self, expand_ratio_stage: int = 0) -> None:
        """Sort every block's hidden channels by importance (before training elastic expand ratios).

        See :meth:`DynamicMBConv.reorganize_middle_weights`; the official recipe uses
        ``expand_ratio_stage = len(expand_ratios) - 2``.
        """
        for block in self._blocks():
            block.reorganize_middle_weights(expand_ratio_stage)


def _check_choices(name: str, values: Sequence[Any], allowed: Sequence[Any]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"`{name}` values {bad!r} are not in this supernet's choices {list(allowed)!r}")


class EASNetSubnet(_EASNetBase):
    """A plain (non-elastic) EASNet sub-network, from :meth:`EASNet.extract_subnet` or built from a config.

    Args:
        config: The architecture (:class:`SubnetConfig`).
        max_disp: Full-resolution disparity range.
        normalize_input: Apply ImageNet mean/std to the [0, 1] inputs.
        official_warp: Warp in refinement exactly as the official code.
    """

    def __init__(
        self, config: SubnetConfig, max_disp: int = 192, normalize_input: bool = True, official_warp: bool = False
    ) -> None:
        if not 1 <= config.s <= NUM_STAGES or any(not 1 <= config.d[i] <= MAX_DEPTH for i in range(config.s)):
            raise ValueError(f"`config` has an invalid depth/scale: {config!r}")
        super().__init__(max_disp, config.s, normalize_input, official_warp)
        self.config = config
        self.features = FeatureExtractor.from_config(config.ks, config.e, config.d, config.s, MAX_DEPTH)
        self.size_divisor = 3 * 2 ** (config.s - 1)


def _batch_images(batch: Any) -> tuple[Tensor, Tensor]:
    if isinstance(batch, dict):
        return batch["left"], batch["right"]
    return batch[0], batch[1]


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[Any], max_batches: int | None = None) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on training ``batches``.

    ``batches`` yields dicts with ``left``/``right`` or ``(left, right, ...)`` tuples (moved to the model's device).
    Statistics become the average of the per-batch statistics (cumulative moving average). The model's
    training/eval mode and BN momenta are restored. Returns the number of batches used.

    Raises:
        ValueError: if ``batches`` is empty.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    device = next(model.parameters()).device
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    count = 0
    try:
        for batch in batches:
            if max_batches is not None and count >= max_batches:
                break
            left, right = _batch_images(batch)
            model(left.to(device), right.to(device))
            count += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.train(was_training)
    if count == 0:
        raise ValueError("`batches` yielded no batch; BatchNorm statistics cannot be re-estimated")
    return count


# Official OFAAANet state-dict names -> ours (applied in order; each pattern is a regular expression).
_OFFICIAL_KEY_RULES = (
    (r"^feature_extractor\.", "features.blocks."),
    (r"\.conv\.inverted_bottleneck\.conv\.conv\.weight$", ".conv.expand_conv.weight"),
    (r"\.conv\.inverted_bottleneck\.bn\.bn\.", ".conv.expand_bn.bn."),
    (r"\.conv\.depth_conv\.conv\.conv\.weight$", ".conv.depth_conv.weight"),
    (r"\.conv\.depth_conv\.conv\.(\d+)to(\d+)_matrix$", r".conv.depth_conv.transform_\1to\2"),
    (r"\.conv\.depth_conv\.bn\.bn\.", ".conv.depth_bn.bn."),
    (r"\.conv\.depth_conv\.se\.fc\.(reduce|expand)\.", r".conv.se.\1."),
    (r"\.conv\.point_linear\.conv\.conv\.weight$", ".conv.project_conv.weight"),
    (r"\.conv\.point_linear\.bn\.bn\.", ".conv.project_bn.bn."),
    (r"^(aggregation\.fusions\.\d+\.branches\.\d+)\.0\.", r"\1."),
    (r"\.conv2\.deform_conv\.weight$", ".conv2.weight"),
    (r"^(refinement\.\d+)\.conv1\.", r"\1.image_conv."),
    (r"^(refinement\.\d+)\.conv2\.", r"\1.disp_conv."),
)


def checkpoint_filter_fn(state: dict[str, Any], model: nn.Module | None = None) -> dict[str, Tensor]:
    """Convert an official EASNet supernet checkpoint (``{"state_dict": ...}`` of ``OFAAANet``) to our key names.

    A ``module.`` prefix is removed. With ``model`` given, keys it does not have are reported.

    Raises:
        KeyError: if ``model`` is given and a converted key is not one of its keys.
    """
    state = state.get("state_dict", state)
    out = {}
    for key, value in state.items():
        new = key.removeprefix("module.")
        for pattern, repl in _OFFICIAL_KEY_RULES:
            new = re.sub(pattern, repl, new)
        out[new] = value
    if model is not None:
        unknown = sorted(set(out) - set(model.state_dict()))
        if unknown:
            raise KeyError(f"{len(unknown)} converted keys are not in the model, e.g. {unknown[:3]}")
    return out


# ---------------------------------------------------------------- registered sizes
def _create_easnet(**kwargs: Any) -> EASNet:
    return EASNet(**kwargs)


@register_model
def easnet(**kwargs: Any) -> EASNet:
    """The EASNet supernet (K{3,5,7} E{2,4,6,8} D{2,3,4} S{2,3,4}; 5,078,506 parameters)."""
    return _create_easnet(**kwargs)


@register_model
def easnet_large(**kwargs: Any) -> EASNetSubnet:
    """The largest EASNet sub-network K7 E8 D4 S4 as a plain model (5,067,210 parameters)."""
    return EASNetSubnet(SubnetConfig.make(7, 8, 4, 4), **kwargs)


@register_model
def easnet_small(**kwargs: Any) -> EASNetSubnet:
    """The smallest EASNet sub-network K3 E2 D2 S2 as a plain model (781,814 parameters)."""
    return EASNetSubnet(SubnetConfig.make(3, 2, 2, 2), **kwargs)
