"""The two collectives a chunk needs, with a fallback for backends that lack the fused forms.

Gloo (CPU) has no reduce-scatter: there it is an all-reduce followed by taking this rank's slice, which moves twice
the bytes but gives the same result. NCCL uses the native ``reduce_scatter_tensor`` and ``all_gather_into_tensor``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather_shards", "reduce_scatter_shards"]

_all_gather_into = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_into = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _uses_gloo(group) -> bool:
    return dist.get_backend(group) == dist.Backend.GLOO


def all_gather_shards(full: Tensor, shard: Tensor, group) -> None:
    """Fill ``full`` (``world * shard.numel()`` elements) with every rank's ``shard`` in rank order."""
    if _uses_gloo(group):
        world = dist.get_world_size(group)
        dist.all_gather(list(full.chunk(world)), shard.contiguous(), group=group)
    else:
        _all_gather_into(full, shard.contiguous(), group=group)


def reduce_scatter_shards(full: Tensor, group) -> Tensor:
    """Sum ``full`` over ranks and return this rank's slice of the sum (a new tensor on the same device)."""
    world = dist.get_world_size(group)
    if _uses_gloo(group):
        dist.all_reduce(full, group=group)
        return full.chunk(world)[dist.get_rank(group)].clone()
    out = torch.empty(full.numel() // world, dtype=full.dtype, device=full.device)
    _reduce_scatter_into(out, full, group=group)
    return out
