"""Fuse per-view depth maps into one point cloud with geometric (and optional photometric) consistency.

The MVSNet_pytorch / DispMVS ``gen_depth_point.py`` procedure: for each reference view, every pixel is lifted with its
depth, projected into each source view, the source depth is read there (nearest pixel), and that source point is
projected back into the reference view. The pixel is *consistent* with the source view when the back-projected
pixel lands within ``pixel_threshold`` pixels and its depth within ``relative_depth_threshold`` (relative) of the
reference depth. Pixels consistent with at least ``min_views`` source views (and, if given, with confidence above
``confidence_threshold`` and depth inside ``depth_range``) become points: the average of the reference point and its
consistent re-projections, coloured from the reference image. DTU's defaults in DispMVS: 3 views, 0.01 relative,
0.25-0.75 px by scan. Returns an :class:`open3d.geometry.PointCloud` (write it with ``open3d.io.write_point_cloud``).
:func:`fuse_prediction_folder` does the same for a folder written by the MVS prediction writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d
import torch
from torch import Tensor

from lightning_hpml.datamodules.formats.image import read_rgb
from lightning_hpml.datamodules.formats.mvs_cameras import read_cam_txt, read_pair_txt
from lightning_hpml.datamodules.formats.pfm import read_pfm

__all__ = ["fuse_depth_maps", "fuse_prediction_folder"]


def _lift(depth: Tensor, intrinsic: Tensor, extrinsic: Tensor, pixels: Tensor) -> Tensor:
    """World points (N, 3) of ``pixels`` (N, 3 homogeneous) at ``depth`` (N,)."""
    camera = (pixels @ torch.linalg.inv(intrinsic).T) * depth[:, None]
    return (camera - extrinsic[:3, 3]) @ extrinsic[:3, :3]


def _project(points: Tensor, intrinsic: Tensor, extrinsic: Tensor) -> tuple[Tensor, Tensor]:
    camera = points @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    z = camera[:, 2]
    pixels = camera @ intrinsic.T
    return pixels[:, :2] / z.clamp_min(1e-9)[:, None], z


def fuse_depth_maps(
    depths: Tensor,
    images: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    pairs: dict[int, list[int]],
    pixel_threshold: float = 0.5,
    relative_depth_threshold: float = 0.01,
    min_views: int = 3,
    depth_range: tuple[float, float] | None = None,
    confidences: Tensor | None = None,
    confidence_threshold: float | None = None,
) -> o3d.geometry.PointCloud:
    """Args: ``depths`` (V, H, W), ``images`` (V, 3, H, W) in [0, 1], ``intrinsics`` (V, 3, 3), ``extrinsics``
    (V, 4, 4) world-to-camera, ``pairs`` reference view -> source views to check; see the module docstring."""
    views, height, width = depths.shape
    if images.shape[0] != views or intrinsics.shape[0] != views or extrinsics.shape[0] != views:
        raise ValueError("depths, images, intrinsics and extrinsics must describe the same number of views")
    depths, intrinsics, extrinsics = depths.double(), intrinsics.double(), extrinsics.double()
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    pixels = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)
    all_points, all_colours = [], []
    for ref, sources in pairs.items():
        depth = depths[ref].reshape(-1)
        keep = depth > 0
        if depth_range is not None:
            keep &= (depth > depth_range[0]) & (depth < depth_range[1])
        if confidences is not None and confidence_threshold is not None:
            keep &= confidences[ref].reshape(-1) > confidence_threshold
        points = _lift(depth, intrinsics[ref], extrinsics[ref], pixels)
        summed, count = points.clone(), torch.zeros_like(depth)
        for src in sources:
            src_px, _ = _project(points, intrinsics[src], extrinsics[src])
            x, y = src_px[:, 0].round().long(), src_px[:, 1].round().long()
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            src_depth = torch.zeros_like(depth)
            src_depth[inside] = depths[src][y[inside], x[inside]]
            src_pixels = torch.stack([x, y, torch.ones_like(x)], -1).double()
            back = _lift(src_depth, intrinsics[src], extrinsics[src], src_pixels)
            back_px, back_z = _project(back, intrinsics[ref], extrinsics[ref])
            consistent = (
                inside
                & (src_depth > 0)
                & ((back_px - pixels[:, :2]).norm(dim=1) < pixel_threshold)
                & ((back_z - depth).abs() < relative_depth_threshold * depth)
            )
            summed[consistent] += back[consistent]
            count += consistent.double()
        keep &= count >= min_views
        all_points.append((summed / (count + 1)[:, None])[keep])
        all_colours.append(images[ref].reshape(3, -1).T.double()[keep])
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(torch.cat(all_points).numpy()))
    cloud.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(torch.cat(all_colours).clamp(0, 1).numpy()))
    return cloud


def fuse_prediction_folder(scene_dir: str | Path, **fusion_args) -> o3d.geometry.PointCloud:
    """Fuse the predictions saved by :class:`~lightning_hpml.callbacks.MVSPredictionWriter` for one scene.

    Reads ``<scene_dir>/pair.txt`` (the source views used for each reference), ``depth_est/{view:08d}.pfm``,
    ``confidence/{view:08d}.pfm``, ``images/{view:08d}.png`` and ``cams/{view:08d}_cam.txt`` (at the prediction
    resolution), so a folder can be re-fused offline with other thresholds. Only source views that have a depth map
    themselves are checked. ``fusion_args`` go to :func:`fuse_depth_maps` (thresholds, ``min_views``,
    ``depth_range``, ``confidence_threshold``).
    """
    scene_dir = Path(scene_dir)
    pairs = read_pair_txt(scene_dir / "pair.txt")
    views = sorted(pairs)
    index = {view: i for i, view in enumerate(views)}
    cameras = [read_cam_txt(scene_dir / "cams" / f"{view:08d}_cam.txt", "max") for view in views]
    depths = torch.stack([torch.from_numpy(read_pfm(scene_dir / "depth_est" / f"{v:08d}.pfm").copy()) for v in views])
    confidences = torch.stack(
        [torch.from_numpy(read_pfm(scene_dir / "confidence" / f"{v:08d}.pfm").copy()) for v in views]
    )
    images = torch.stack(
        [torch.from_numpy(read_rgb(scene_dir / "images" / f"{v:08d}.png")).permute(2, 0, 1) / 255.0 for v in views]
    )
    intrinsics = torch.from_numpy(np.stack([c.intrinsic for c in cameras]))
    extrinsics = torch.from_numpy(np.stack([c.extrinsic for c in cameras]))
    view_pairs = {index[ref]: [index[s] for s, _ in sources if s in index] for ref, sources in pairs.items()}
    return fuse_depth_maps(
        depths, images.float(), intrinsics, extrinsics, view_pairs, confidences=confidences, **fusion_args
    )
