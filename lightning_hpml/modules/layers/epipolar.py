"""Two-view epipolar geometry for multi-view stereo (the geometry DispMVS's epipolar disparity flow is built on).

Cameras follow the MVS batch convention: ``extrinsics`` world-to-camera (B, 4, 4), ``intrinsics`` (B, 3, 3) in
pixels of the image they belong to. For a reference pixel ``p`` the candidates in a source view lie on its epipolar
line: the projections of ``X(d) = d * K_r^-1 p`` (reference camera coordinates) for depths ``d``. DispMVS moves a
point along that line ("epipolar flow") instead of sweeping depth hypotheses, so the line is returned as the
projection of the point at infinity plus a unit direction pointing towards nearer depths, and depth is recovered from
a matched source pixel by triangulation (least squares over both image axes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["epipolar_lines", "project", "relative_pose", "sample_along_lines", "triangulate_depth"]


def relative_pose(ref_extrinsic: Tensor, src_extrinsic: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation (B, 3, 3) and translation (B, 3) taking reference-camera points to source-camera points."""
    transform = src_extrinsic @ torch.linalg.inv(ref_extrinsic)
    return transform[:, :3, :3], transform[:, :3, 3]


def project(points_cam: Tensor, intrinsic: Tensor) -> tuple[Tensor, Tensor]:
    """Camera-frame points (B, N, 3) -> pixels (B, N, 2) and depths (B, N)."""
    homogeneous = points_cam @ intrinsic.transpose(1, 2)
    depth = homogeneous[..., 2]
    return homogeneous[..., :2] / depth[..., None].clamp_min(1e-9), depth


def epipolar_lines(
    pixels: Tensor, ref_intrinsic: Tensor, ref_extrinsic: Tensor, src_intrinsic: Tensor, src_extrinsic: Tensor
) -> tuple[Tensor, Tensor]:
    """For reference ``pixels`` (B, N, 2): the source-view projection of the point at infinity (B, N, 2) and the unit
    direction (B, N, 2) along which the projection moves as depth decreases."""
    rotation, translation = relative_pose(ref_extrinsic, src_extrinsic)
    rays = torch.cat([pixels, torch.ones_like(pixels[..., :1])], -1) @ torch.linalg.inv(ref_intrinsic).transpose(1, 2)
    far = rays @ rotation.transpose(1, 2) @ src_intrinsic.transpose(1, 2)  # K_s R a: direction at infinity
    at_infinity = far[..., :2] / far[..., 2:].clamp_min(1e-9)
    near, _ = project(rays @ rotation.transpose(1, 2) + translation[:, None], src_intrinsic)  # depth 1
    direction = near - at_infinity
    return at_infinity, direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def sample_along_lines(features: Tensor, start: Tensor, direction: Tensor, offsets: Tensor) -> Tensor:
    """Bilinear samples of ``features`` (B, C, H, W) at ``start + offset * direction`` for every offset (K,).

    Returns (B, C, N, K); points outside the image read zeros (``padding_mode="zeros"``), as a correlation cost
    volume would treat them.
    """
    height, width = features.shape[-2:]
    points = start[:, :, None, :] + offsets[None, None, :, None] * direction[:, :, None, :]  # (B, N, K, 2)
    scale = torch.tensor([2.0 / width, 2.0 / height], device=points.device, dtype=points.dtype)
    grid = (points + 0.5) * scale - 1.0  # pixel centres at integer coordinates
    return F.grid_sample(features, grid.to(features.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def triangulate_depth(
    ref_pixels: Tensor,
    src_pixels: Tensor,
    ref_intrinsic: Tensor,
    ref_extrinsic: Tensor,
    src_intrinsic: Tensor,
    src_extrinsic: Tensor,
) -> Tensor:
    """Reference-camera depth (B, N) of the point seen at ``ref_pixels`` and ``src_pixels`` (B, N, 2).

    With ``a = K_r^-1 p``, a source pixel ``s`` satisfies ``s * (d (K_s R a)_z + (K_s t)_z) = d (K_s R a)_xy +
    (K_s t)_xy``: two linear equations in ``d``, solved in the least-squares sense.
    """
    rotation, translation = relative_pose(ref_extrinsic, src_extrinsic)
    rays = torch.cat([ref_pixels, torch.ones_like(ref_pixels[..., :1])], -1)
    rays = rays @ torch.linalg.inv(ref_intrinsic).transpose(1, 2)
    m = rays @ rotation.transpose(1, 2) @ src_intrinsic.transpose(1, 2)  # (B, N, 3)
    k_t = (src_intrinsic @ translation[..., None])[..., 0][:, None, :]  # (B, 1, 3)
    a = src_pixels * m[..., 2:] - m[..., :2]
    b = k_t[..., :2] - src_pixels * k_t[..., 2:]
    return (a * b).sum(-1) / (a * a).sum(-1).clamp_min(1e-12)
