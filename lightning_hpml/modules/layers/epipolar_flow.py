"""Epipolar disparity flow ("E-flow") between a reference and a source view: DispMVS's matching geometry.

For every reference pixel, the candidate matches in the source view lie on its epipolar line. DispMVS parameterises a
match by one scalar per pixel, the *flow* ``f``: ``match = base + f * direction``, where ``base`` is the projection
of the pixel at an initial depth and ``direction`` is the unit line direction towards larger depth. This module holds
that geometry for a batch of (reference, source) pairs on one feature grid and provides:

* :meth:`EpipolarFlow.cost` - the 2-D cost volume along the line: for pyramid level ``p`` (source features average
  pooled ``p`` times) and offsets ``s in [-r, r]`` (in grid pixels, the same at every level, as the official code),
  the dot product of the reference feature with the bilinearly sampled source feature at ``base + (f + s) * dir``,
  divided by the channel count;
* :meth:`EpipolarFlow.inverse_depth` - triangulation of the matched pixel: with ``m = K_s R K_r^-1 [u, v, 1]`` and
  ``k = K_s t``, a source pixel ``x`` satisfies ``x (m_z + k_z / d) = m_xy + k_xy / d``, which is linear in the inverse
  depth ``1/d``; it is solved in the least-squares sense over both image axes (the official code uses the axis
  along which the line is steeper, which is the better-conditioned half of the same system);
* :meth:`EpipolarFlow.flow_from_depth` - the flow that puts the match at the projection of a given depth.

Pixel coordinates put pixel centres at integers; pooled levels map ``x`` to ``(x + 0.5) / 2**p - 0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_hpml.modules.layers.epipolar import relative_pose, sample_along_lines

__all__ = ["EpipolarFlow", "pixel_grid"]


def pixel_grid(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """(H * W, 2) pixel-centre coordinates ``(x, y)`` in row-major order."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([x, y], -1).reshape(-1, 2)


class EpipolarFlow:
    """Matching geometry of ``N`` (reference, source) pairs on an ``h x w`` grid.

    Args:
        ref_intrinsic, src_intrinsic: (N, 3, 3) intrinsics for this grid.
        ref_extrinsic, src_extrinsic: (N, 4, 4) world-to-camera.
        init_depth: (N, 1, h, w) reference depth that defines ``base`` (positive).
        src_features: (N, C, h, w) source-view features for the cost volume.
        levels, radius: Cost-volume pyramid levels and sampling radius.
    """

    def __init__(
        self,
        ref_intrinsic: Tensor,
        ref_extrinsic: Tensor,
        src_intrinsic: Tensor,
        src_extrinsic: Tensor,
        init_depth: Tensor,
        src_features: Tensor,
        levels: int,
        radius: int,
    ) -> None:
        n, _, h, w = init_depth.shape
        self.shape = (n, 1, h, w)
        self.levels, self.radius = levels, radius
        rotation, translation = relative_pose(ref_extrinsic.float(), src_extrinsic.float())
        pixels = pixel_grid(h, w, init_depth.device)
        rays = torch.cat([pixels, torch.ones_like(pixels[:, :1])], -1) @ torch.linalg.inv(ref_intrinsic.float()).mT
        self.rays = rays if rays.ndim == 3 else rays.expand(n, -1, -1)  # (N, hw, 3), z = 1
        self.ray_image = self.rays @ rotation.mT @ src_intrinsic.float().mT  # m = K_s R a, (N, hw, 3)
        self.translation_image = (src_intrinsic.float() @ translation[..., None])[..., 0][:, None]  # k, (N, 1, 3)
        depth = init_depth.float().reshape(n, -1)
        self.base = self._project(depth)
        direction = self._project(2.0 * depth) - self.base
        self.direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        self.pyramid = [src_features]
        for _ in range(levels - 1):
            self.pyramid.append(F.avg_pool2d(self.pyramid[-1], 2, stride=2))

    def _project(self, depth: Tensor) -> Tensor:
        """Source pixels (N, hw, 2) of the reference pixels at ``depth`` (N, hw)."""
        homogeneous = self.ray_image * depth[..., None] + self.translation_image
        return homogeneous[..., :2] / homogeneous[..., 2:].clamp_min(1e-6)

    def _as_points(self, flow: Tensor) -> Tensor:
        return flow.reshape(self.shape[0], -1)[..., None].float()

    def match(self, flow: Tensor) -> Tensor:
        """Source pixels (N, hw, 2) matched by ``flow`` (N, 1, h, w)."""
        return self.base + self._as_points(flow) * self.direction

    def cost(self, ref_features: Tensor, flow: Tensor) -> Tensor:
        """(N, levels * (2r + 1), h, w) correlation of ``ref_features`` (N, C, h, w) along the epipolar lines."""
        n, channels, h, w = ref_features.shape
        offsets = torch.arange(-self.radius, self.radius + 1, device=flow.device, dtype=torch.float32)
        start = self.match(flow)
        reference = ref_features.reshape(n, channels, -1, 1)
        costs = []
        for level, features in enumerate(self.pyramid):
            scale = 2.0**level
            samples = sample_along_lines(features, (start + 0.5) / scale - 0.5, self.direction / scale, offsets)
            costs.append((samples * reference).sum(1) / channels)  # (N, hw, K)
        return torch.cat(costs, -1).permute(0, 2, 1).reshape(n, -1, h, w)

    def inverse_depth(self, flow: Tensor) -> Tensor:
        """Triangulated reference inverse depth (N, 1, h, w) of the matches given by ``flow``."""
        x = self.match(flow)
        a = x * self.ray_image[..., 2:] - self.ray_image[..., :2]
        b = self.translation_image[..., :2] - x * self.translation_image[..., 2:]
        inverse = (a * b).sum(-1) / (b * b).sum(-1).clamp_min(1e-12)
        return inverse.reshape(self.shape)

    def flow_from_depth(self, depth: Tensor) -> Tensor:
        """The flow (N, 1, h, w) whose match is the projection of the reference pixels at ``depth`` (N, 1, h, w)."""
        projected = self._project(depth.float().reshape(self.shape[0], -1))
        return ((projected - self.base) * self.direction).sum(-1).reshape(self.shape)
