"""Pure-PyTorch FPS, ball query and grouping against naive loops of the CUDA kernels' semantics."""

from __future__ import annotations

import time

import pytest
import torch

from lightning_hpml.modules.layers.point_ops import ball_query, farthest_point_sample, gather_points, group_points


def naive_fps(xyz: torch.Tensor, n: int) -> torch.Tensor:
    out = []
    for pts in xyz:
        chosen = [0]
        dist = torch.full((pts.shape[0],), float("inf"), dtype=pts.dtype)
        for _ in range(1, n):
            dist = torch.minimum(dist, ((pts - pts[chosen[-1]]) ** 2).sum(-1))
            best, best_i = -1.0, 0
            for i, d in enumerate(dist.tolist()):
                if d > best:
                    best, best_i = d, i
            chosen.append(best_i)
        out.append(chosen)
    return torch.tensor(out)


def naive_ball_query(radius, k, xyz, new_xyz):
    b, m = new_xyz.shape[:2]
    idx = torch.zeros(b, m, k, dtype=torch.long)
    for bi in range(b):
        for j in range(m):
            cnt = 0
            for i in range(xyz.shape[1]):
                if ((xyz[bi, i] - new_xyz[bi, j]) ** 2).sum() < radius**2:
                    if cnt == 0:
                        idx[bi, j, :] = i
                    idx[bi, j, cnt] = i
                    cnt += 1
                    if cnt >= k:
                        break
    return idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_matches_naive_loop(dtype):
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(3, 200, 3, generator=g, dtype=dtype) * 10
    idx = farthest_point_sample(xyz, 40)
    assert idx.shape == (3, 40) and idx.dtype == torch.long
    assert torch.equal(idx, naive_fps(xyz, 40))
    assert all(len(set(row.tolist())) == 40 for row in idx)  # distinct picks


def test_fps_edge_cases_and_errors():
    xyz = torch.rand(1, 5, 3)
    assert torch.equal(farthest_point_sample(xyz, 1), torch.zeros(1, 1, dtype=torch.long))
    assert sorted(farthest_point_sample(xyz, 5)[0].tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="`n`"):
        farthest_point_sample(xyz, 6)
    with pytest.raises(ValueError, match=r"`xyz` must be a \(B, N, 3\)"):
        farthest_point_sample(torch.rand(5, 3), 2)


def test_ball_query_matches_naive_loop():
    g = torch.Generator().manual_seed(1)
    xyz = torch.rand(2, 150, 3, generator=g) * 4
    new_xyz = torch.cat([xyz[:, :20], torch.rand(2, 10, 3, generator=g) * 4 + 6], dim=1)  # last 10 far away
    for radius, k in [(0.5, 4), (1.0, 16), (2.0, 8)]:
        torch.testing.assert_close(ball_query(radius, k, xyz, new_xyz), naive_ball_query(radius, k, xyz, new_xyz))


def test_ball_query_semantics():
    xyz = torch.tensor([[[5.0, 0, 0], [0.1, 0, 0], [0.0, 0, 0], [0.5, 0, 0], [1.0, 0, 0], [0.2, 0, 0]]])
    centre = torch.zeros(1, 1, 3)
    idx, cnt = ball_query(1.0, 4, xyz, centre, return_counts=True)
    # first points within the radius in index order; |p| = 1.0 is not strictly inside
    assert idx.tolist() == [[[1, 2, 3, 5]]] and cnt.tolist() == [[4]]
    idx, cnt = ball_query(0.15, 5, xyz, centre, return_counts=True)
    assert idx.tolist() == [[[1, 2, 1, 1, 1]]] and cnt.tolist() == [[2]]  # padded with the first found
    idx, cnt = ball_query(0.5, 3, xyz, torch.tensor([[[-9.0, -9.0, -9.0]]]), return_counts=True)
    assert idx.tolist() == [[[0, 0, 0]]] and cnt.tolist() == [[0]]  # empty ball -> index 0 (as the CUDA kernel)
    assert ball_query(10.0, 9, xyz, centre).tolist() == [[[0, 1, 2, 3, 4, 5, 0, 0, 0]]]  # k > N: pad with first
    with pytest.raises(ValueError, match="`new_xyz`"):
        ball_query(1.0, 4, xyz, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="batch size"):
        ball_query(1.0, 4, xyz, torch.zeros(2, 1, 3))


def test_group_and_gather():
    feats = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5).requires_grad_()
    idx = torch.tensor([[[0, 4], [2, 2]], [[1, 3], [0, 0]]])
    grouped = group_points(feats, idx)
    assert grouped.shape == (2, 3, 2, 2)
    assert torch.equal(grouped[1, :, 0, 1], feats[1, :, 3].detach())
    gathered = gather_points(feats, idx[:, :, 0])
    assert torch.equal(gathered[0, :, 1], feats[0, :, 2].detach())
    (grouped.sum() + gathered.sum()).backward()
    assert feats.grad[0, 0].tolist() == [2.0, 0.0, 3.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="`idx`"):
        group_points(feats, idx[0])


def test_kitti_sized_sampling_is_fast():
    """16384 -> 4096 FPS and a 32-neighbour ball query run in seconds on one CPU thread."""
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(1, 16384, 3, generator=g) * torch.tensor([70.4, 80.0, 4.0])
    start = time.perf_counter()
    idx = farthest_point_sample(xyz, 4096)
    fps_s = time.perf_counter() - start
    centres = xyz.gather(1, idx.unsqueeze(-1).expand(-1, -1, 3))
    start = time.perf_counter()
    ball_query(0.8, 32, xyz, centres)
    bq_s = time.perf_counter() - start
    assert fps_s < 5.0 and bq_s < 5.0, (fps_s, bq_s)
