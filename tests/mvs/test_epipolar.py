"""Epipolar geometry checked against points with known positions."""

from __future__ import annotations

import math

import torch

from lightning_hpml.modules.layers.epipolar import (
    epipolar_lines,
    project,
    relative_pose,
    sample_along_lines,
    triangulate_depth,
)


def _rotation(yaw: float, pitch: float) -> torch.Tensor:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rx = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], dtype=torch.float64)
    return rx @ ry


def _cameras():
    k_ref = torch.tensor([[[300.0, 0, 80], [0, 310, 64], [0, 0, 1]]], dtype=torch.float64)
    k_src = torch.tensor([[[280.0, 0, 84], [0, 285, 60], [0, 0, 1]]], dtype=torch.float64)
    e_ref = torch.eye(4, dtype=torch.float64)[None].clone()
    e_ref[0, :3, :3] = _rotation(0.1, -0.05)
    e_ref[0, :3, 3] = torch.tensor([0.2, -0.1, 0.3])
    e_src = torch.eye(4, dtype=torch.float64)[None].clone()
    e_src[0, :3, :3] = _rotation(-0.25, 0.08)
    e_src[0, :3, 3] = torch.tensor([-0.9, 0.15, 0.2])
    return k_ref, e_ref, k_src, e_src


def _world_points(n: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat(
        [
            torch.rand(1, n, 2, generator=g, dtype=torch.float64) * 2 - 1,
            torch.rand(1, n, 1, generator=g, dtype=torch.float64) * 4 + 3,
        ],
        -1,
    )


def _to_camera(points: torch.Tensor, extrinsic: torch.Tensor) -> torch.Tensor:
    return points @ extrinsic[:, :3, :3].transpose(1, 2) + extrinsic[:, None, :3, 3]


def test_a_points_source_projection_lies_on_its_epipolar_line_towards_nearer_depths():
    k_ref, e_ref, k_src, e_src = _cameras()
    world = _world_points()
    ref_px, ref_depth = project(_to_camera(world, e_ref), k_ref)
    src_px, _ = project(_to_camera(world, e_src), k_src)
    start, direction = epipolar_lines(ref_px, k_ref, e_ref, k_src, e_src)
    offset = src_px - start
    along = (offset * direction).sum(-1)
    across = offset[..., 0] * direction[..., 1] - offset[..., 1] * direction[..., 0]
    assert across.abs().max() < 1e-9  # on the line
    assert (along > 0).all()  # finite depth: moved from the point at infinity towards the epipole side
    # a nearer point on the same ray lies further along the line
    rotation, translation = relative_pose(e_ref, e_src)
    rays = torch.cat([ref_px, torch.ones_like(ref_px[..., :1])], -1) @ torch.linalg.inv(k_ref).transpose(1, 2)
    nearer, _ = project((rays * (ref_depth[..., None] * 0.8)) @ rotation.transpose(1, 2) + translation[:, None], k_src)
    assert (((nearer - start) * direction).sum(-1) > along).all()


def test_sampling_along_the_line_reads_the_feature_at_the_true_match():
    k_ref, e_ref, k_src, e_src = _cameras()
    k_src[0, :2, 2] = torch.tensor([300.0, 300.0])  # a large source image so that every match is inside it
    world = _world_points()
    ref_px, _ = project(_to_camera(world, e_ref), k_ref)
    src_px, _ = project(_to_camera(world, e_src), k_src)
    height, width = 600, 600
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    features = torch.stack([0.01 * xs, 0.02 * ys])[None]  # linear in the pixel position: bilinear is exact
    start, direction = epipolar_lines(ref_px, k_ref, e_ref, k_src, e_src)
    along = ((src_px - start) * direction).sum(-1)
    inside = (src_px[..., 0] > 1) & (src_px[..., 0] < width - 2) & (src_px[..., 1] > 1) & (src_px[..., 1] < height - 2)
    assert inside.sum() > 40
    for i in torch.nonzero(inside[0]).flatten().tolist()[:10]:
        samples = sample_along_lines(features, start[:, i : i + 1], direction[:, i : i + 1], along[0, i : i + 1])
        expected = torch.stack([0.01 * src_px[0, i, 0], 0.02 * src_px[0, i, 1]])
        torch.testing.assert_close(samples[0, :, 0, 0], expected, atol=1e-9, rtol=1e-9)


def test_triangulation_recovers_the_true_depth():
    k_ref, e_ref, k_src, e_src = _cameras()
    world = _world_points()
    ref_px, ref_depth = project(_to_camera(world, e_ref), k_ref)
    src_px, _ = project(_to_camera(world, e_src), k_src)
    depth = triangulate_depth(ref_px, src_px, k_ref, e_ref, k_src, e_src)
    torch.testing.assert_close(depth, ref_depth, rtol=1e-9, atol=1e-9)
