"""Rotation-invariant point-pair features of RIDE's rotation-invariance block (``get_ri_feats_2d``).

Paper: X. Wang, J. Han, Y. Liu, Z. Li (HUST), "RIDE: Boosting 3D Object Detection for LiDAR Point Clouds via
Rotation-Invariant Analysis", arXiv 2408.15643 (IEEE T-ITS). Official code: https://github.com/CentauriStar/RIDE
(``pcdet/ops/pointnet2/pointnet2_batch/pointnet2_modules.py``, ``PointnetSAModuleMSG_WithSampling.get_ri_feats_2d``);
reimplemented from the formulas, no code copied.

For one ball-query group with relative offsets ``q_i = p_i - c`` (i = 1..k, in grouping order) around the absolute
centre ``c``, everything is computed on the XY plane (the LiDAR ground plane), so the features are invariant to a
rotation of the whole scene about the vertical axis through the sensor origin:

* ``m = mean_i q_i`` (centroid of the offsets), ``q'_i = roll(q, 1)_i = q_{i-1}`` (cyclic neighbour),
* ``v = m - c`` (as in the official code: the *relative* centroid minus the *absolute* centre), ``u = v / (|v| + eps)``,
* ``d1 = |q_i - m|``, ``d2 = |q_i|``, ``d3 = |q_i - q'_i|``, ``d4 = |q'_i - m|``, ``d5 = |q'_i - c|``,
* ``cos1 = <q_i - m, u> / (d1 + eps)``, ``cos2 = <q_i, u> / (d2 + eps)``, ``cos3 = <q'_i - m, u> / (d4 + eps)``,

with ``eps = 1e-10`` and NaN replaced by 0, followed by the relative height ``q_i.z``: 9 channels. Because ``v``
mixes a relative and an absolute vector, the invariance holds for rotations about the sensor origin (not about
each group's own centre); ``d5`` likewise measures from the absolute centre.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NUM_RI_CHANNELS", "rotation_invariant_features"]

NUM_RI_CHANNELS = 9
_EPS = 1e-10


def _nan_to_zero(x: Tensor) -> Tensor:
    return torch.where(torch.isnan(x), torch.zeros_like(x), x)


def rotation_invariant_features(grouped_rel_xyz: Tensor, centres: Tensor) -> Tensor:
    """RIDE's 9 rotation-invariant channels ``(B, 9, n, k)`` for groups ``grouped_rel_xyz`` (B, n, k, 3).

    Args:
        grouped_rel_xyz: Neighbour offsets from their group centre, ``(B, n, k, 3)``, in ball-query order (the
            cyclic neighbour of slot ``i`` is slot ``i - 1``, as ``torch.roll(..., 1)``).
        centres: Absolute group centres ``(B, n, 3)``.

    Returns:
        ``(B, 9, n, k)``: ``d1, d2, d3, d4, d5, cos1, cos2, cos3`` on the XY plane and the relative ``z``.
    """
    if grouped_rel_xyz.ndim != 4 or grouped_rel_xyz.shape[-1] != 3:
        raise ValueError(f"`grouped_rel_xyz` must be (B, n, k, 3), got {tuple(grouped_rel_xyz.shape)}")
    if centres.shape != (*grouped_rel_xyz.shape[:2], 3):
        raise ValueError(
            f"`centres` must be (B, n, 3) = {(*grouped_rel_xyz.shape[:2], 3)} to match `grouped_rel_xyz`, "
            f"got {tuple(centres.shape)}"
        )
    q = grouped_rel_xyz[..., :2]  # (B, n, k, 2)
    z = grouped_rel_xyz[..., 2]
    c = centres[..., :2].unsqueeze(2)  # (B, n, 1, 2)
    m = q.mean(dim=2, keepdim=True)  # (B, n, 1, 2)
    q_next = torch.roll(q, shifts=1, dims=2)

    to_m = q - m
    next_to_m = q_next - m
    d1 = to_m.norm(dim=-1)
    d2 = q.norm(dim=-1)
    d3 = (q - q_next).norm(dim=-1)
    d4 = next_to_m.norm(dim=-1)
    d5 = (q_next - c).norm(dim=-1)

    v = m - c
    u = _nan_to_zero(v / (v.norm(dim=-1, keepdim=True) + _EPS))
    cos1 = _nan_to_zero((to_m * u).sum(-1) / (d1 + _EPS))
    cos2 = _nan_to_zero((q * u).sum(-1) / (d2 + _EPS))
    cos3 = _nan_to_zero((next_to_m * u).sum(-1) / (d4 + _EPS))
    return torch.stack([d1, d2, d3, d4, d5, cos1, cos2, cos3, z], dim=1)
