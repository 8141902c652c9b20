"""Batched point-cloud sampling and grouping in pure PyTorch (farthest point sampling, ball query, gather).

These replace the CUDA extensions of the PointNet++ family (``pointnet2_batch`` in OpenPCDet, used by IA-SSD and
RIDE) with vectorised tensor code that runs on any device and in any floating dtype. The semantics follow the CUDA
kernels so that a network trained with one behaves the same with the other:

* :func:`farthest_point_sample` starts from index 0 and repeatedly takes the point farthest (squared Euclidean
  distance) from the already chosen set; ties go to the lowest index.
* :func:`ball_query` returns, for each centre, the first ``k`` points (in index order) whose squared distance is
  strictly below ``radius**2``; when fewer than ``k`` are found the remaining slots repeat the first one found.
  A centre with no point inside the ball gets index 0 in every slot, which is what the CUDA kernel leaves in its
  zero-initialised output (it silently groups point 0); :func:`ball_query` can also return the per-centre counts so
  callers can tell those groups apart.
* :func:`group_points` and :func:`gather_points` index features ``(B, C, N)`` by ``(B, n, k)`` / ``(B, n)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ball_query", "farthest_point_sample", "gather_points", "group_points"]

# Centre chunk for ball query: at most this many (centre, point) pairs are held at once.
_PAIRS_PER_CHUNK = 1 << 22


def _check_xyz(name: str, xyz: Tensor) -> None:
    if not isinstance(xyz, Tensor) or xyz.ndim != 3 or xyz.shape[-1] != 3:
        shape = tuple(xyz.shape) if isinstance(xyz, Tensor) else type(xyz).__name__
        raise ValueError(f"`{name}` must be a (B, N, 3) tensor of coordinates, got {shape}")
    if not xyz.is_floating_point():
        raise TypeError(f"`{name}` must be floating point, got {xyz.dtype}")


def farthest_point_sample(xyz: Tensor, n: int) -> Tensor:
    """Farthest point sampling (D-FPS): indices ``(B, n)`` of ``n`` well-spread points of ``xyz`` ``(B, N, 3)``.

    The first index is 0; each next one maximises the squared distance to the chosen set. The loop runs over the
    ``n`` picks only; every pick is one vectorised update over all batches and points. Requires ``1 <= n <= N``.
    """
    _check_xyz("xyz", xyz)
    b, num, _ = xyz.shape
    if not 1 <= n <= num:
        raise ValueError(f"`n` must be in [1, N={num}] for farthest point sampling, got {n}")
    x, y, z = xyz.detach().unbind(-1)  # (B, N) each: three contiguous planes are faster than (B, N, 3) rows
    x, y, z = x.contiguous(), y.contiguous(), z.contiguous()
    idx = torch.zeros(b, n, dtype=torch.long, device=xyz.device)
    min_d2 = torch.full((b, num), float("inf"), dtype=xyz.dtype, device=xyz.device)
    last = torch.zeros(b, 1, dtype=torch.long, device=xyz.device)
    for i in range(1, n):
        d2 = (x - x.gather(1, last)).square_()
        dy = y - y.gather(1, last)
        d2.addcmul_(dy, dy)
        dz = z - z.gather(1, last)
        d2.addcmul_(dz, dz)
        torch.minimum(min_d2, d2, out=min_d2)
        last = min_d2.argmax(dim=1, keepdim=True)
        idx[:, i : i + 1] = last
    return idx


def ball_query(
    radius: float, k: int, xyz: Tensor, new_xyz: Tensor, *, return_counts: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Indices ``(B, n, k)`` of the first ``k`` points of ``xyz`` (B, N, 3) within ``radius`` of each ``new_xyz``.

    "Within" means squared distance ``< radius**2`` (strict, as the CUDA kernel). Slots beyond the number found
    repeat the first point found; an empty ball gives index 0 everywhere (see the module docstring). With
    ``return_counts`` the number of points found per centre, capped at ``k``, is returned as well ``(B, n)``.
    """
    _check_xyz("xyz", xyz)
    _check_xyz("new_xyz", new_xyz)
    if xyz.shape[0] != new_xyz.shape[0]:
        raise ValueError(
            f"`xyz` and `new_xyz` must have the same batch size, got {xyz.shape[0]} and {new_xyz.shape[0]}"
        )
    if k < 1:
        raise ValueError(f"`k` (neighbours per ball) must be >= 1, got {k}")
    if not radius > 0:
        raise ValueError(f"`radius` must be positive, got {radius}")
    b, num, _ = xyz.shape
    m = new_xyz.shape[1]
    r2 = float(radius) ** 2
    points = xyz.detach().transpose(1, 2).unsqueeze(1)  # (B, 1, 3, N)
    centres = new_xyz.detach().unsqueeze(-1)  # (B, n, 3, 1)
    k_eff = min(k, num)
    arange = torch.arange(num, device=xyz.device)
    out = torch.zeros(b, m, k, dtype=torch.long, device=xyz.device)
    counts = torch.zeros(b, m, dtype=torch.long, device=xyz.device)
    chunk = max(1, _PAIRS_PER_CHUNK // max(1, b * num))
    for start in range(0, m, chunk):
        c = centres[:, start : start + chunk]
        d2 = (points[:, :, 0] - c[:, :, 0]).square_()
        dy = points[:, :, 1] - c[:, :, 1]
        d2.addcmul_(dy, dy)
        dz = points[:, :, 2] - c[:, :, 2]
        d2.addcmul_(dz, dz)
        inside = d2 < r2  # (B, chunk, N)
        # Index where inside, N elsewhere; the k smallest are the first k inside points in index order.
        keyed = torch.where(inside, arange, num)
        first = keyed.topk(k_eff, dim=-1, largest=False, sorted=True).values  # (B, chunk, k_eff)
        found = first < num
        cnt = found.sum(-1)
        head = torch.where(cnt > 0, first[..., 0], 0).unsqueeze(-1)
        sel = torch.where(found, first, head)
        if k_eff < k:
            sel = torch.cat([sel, head.expand(-1, -1, k - k_eff)], dim=-1)
        out[:, start : start + chunk] = sel
        counts[:, start : start + chunk] = cnt
    return (out, counts) if return_counts else out


def group_points(features: Tensor, idx: Tensor) -> Tensor:
    """Gather ``features`` (B, C, N) at ``idx`` (B, n, k) into ``(B, C, n, k)`` (differentiable in ``features``)."""
    if features.ndim != 3:
        raise ValueError(f"`features` must be (B, C, N), got {tuple(features.shape)}")
    if idx.ndim != 3 or idx.shape[0] != features.shape[0]:
        raise ValueError(f"`idx` must be (B, n, k) with B={features.shape[0]}, got {tuple(idx.shape)}")
    b, c, _ = features.shape
    _, n, k = idx.shape
    flat = idx.reshape(b, 1, n * k).expand(b, c, n * k)
    return features.gather(2, flat).reshape(b, c, n, k)


def gather_points(features: Tensor, idx: Tensor) -> Tensor:
    """Gather ``features`` (B, C, N) at ``idx`` (B, n) into ``(B, C, n)`` (differentiable in ``features``)."""
    if features.ndim != 3:
        raise ValueError(f"`features` must be (B, C, N), got {tuple(features.shape)}")
    if idx.ndim != 2 or idx.shape[0] != features.shape[0]:
        raise ValueError(f"`idx` must be (B, n) with B={features.shape[0]}, got {tuple(idx.shape)}")
    return features.gather(2, idx.unsqueeze(1).expand(-1, features.shape[1], -1))
