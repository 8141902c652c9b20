"""Top-k selection with error feedback (the residual keeps what was not sent)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SPARSE_VALUE_DTYPES",
    "add_gathered_sparse",
    "num_selected",
    "pack_sparse",
    "select_topk_with_residual",
    "take_topk_",
    "wire_bytes_per_selected",
]

#: Value dtypes a sparse message may carry (the indices are always int32).
SPARSE_VALUE_DTYPES = ("float32", "bfloat16")


def num_selected(numel: int, density: float) -> int:
    """Entries a group of ``numel`` elements sends at ``density``: ``ceil(density * numel)``, at least one."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    return min(numel, max(1, math.ceil(density * numel)))


#: Below this size (or above ``_PREFILTER_MAX_DENSITY``) ``torch.topk`` runs on the whole tensor.
_PREFILTER_MIN_NUMEL = 1 << 16
_PREFILTER_MAX_DENSITY = 0.1
_SAMPLE_SIZE = 8192
#: Standard deviations of the sampled tail fraction added to the pre-filter's target, so it rarely admits < k.
_PREFILTER_SIGMAS = 5.0


def take_topk_(
    accumulated: Tensor,
    k: int,
    generator: torch.Generator | None = None,
    scratch: Tensor | None = None,
    value_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Return the ``k`` largest-magnitude entries of ``accumulated`` as ``(values, int32 indices)`` and take them
    out of it in place, so what stays in ``accumulated`` is the new residual (LAGS: ``a = eps + g``,
    ``eps = a - TopK(a)``). With ``value_dtype`` (e.g. bf16 for the wire) the values come back rounded to it and
    the rounding error stays in ``accumulated``.

    The selection is exact. For large tensors a threshold estimated from a random sample (``generator``, so the
    training RNG is untouched) first keeps slightly more than ``k`` candidates (:func:`_indices_at_least`) and
    ``torch.topk`` runs on those only; if fewer than ``k`` pass, the full ``torch.topk`` runs instead. ``scratch``
    (fp32, at least ``accumulated``'s size) receives the magnitudes, so no large buffer is allocated per call. On one
    CPU thread (this project's VM, 2026-12-01) the whole call takes about 4.6 ms for 2.4M elements at k = 24k, 10.9 ms
    at k = 120k and 5.9 ms for 1.33M at k = 66k; ``torch.topk`` alone 60-64 ms and 28 ms. Ties at the k-th magnitude
    do occur in training, and ``torch.topk`` breaks them its own way: another selection rule (NumPy's
    ``argpartition``, 5x faster on the candidates) sends other entries and changes the training trajectory (stereo
    seed 0, recommended variant: EPE 4.41 instead of 4.26); the convergence results were measured with
    ``torch.topk``'s choice, so it stays.
    """
    numel = accumulated.numel()
    magnitude = torch.abs(accumulated, out=scratch[:numel]) if scratch is not None else accumulated.abs()
    indices = _topk_indices(magnitude, k, generator)
    values = accumulated.index_select(0, indices)
    if value_dtype is None or value_dtype == values.dtype:
        accumulated.index_fill_(0, indices, 0)
    else:
        sent = values.to(value_dtype)
        accumulated.index_copy_(0, indices, values - sent.to(values.dtype))
        values = sent
    return values, indices.to(torch.int32)


def select_topk_with_residual(
    accumulated: Tensor, residual: Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`take_topk_` that leaves ``accumulated`` untouched and writes ``accumulated - TopK(accumulated)`` into
    ``residual``."""
    residual.copy_(accumulated)
    return take_topk_(residual, k, generator)


def _topk_indices(magnitude: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    numel = magnitude.numel()
    if numel >= _PREFILTER_MIN_NUMEL and k <= _PREFILTER_MAX_DENSITY * numel:
        sample = magnitude.index_select(
            0, torch.randint(0, numel, (_SAMPLE_SIZE,), device=magnitude.device, generator=generator)
        )
        tail = k / numel
        tail += _PREFILTER_SIGMAS * math.sqrt(tail * (1.0 - tail) / _SAMPLE_SIZE)
        rank = max(1, min(_SAMPLE_SIZE, round((1.0 - tail) * _SAMPLE_SIZE)))
        threshold = torch.kthvalue(sample, rank).values.item()  # a Python float compares faster than a 0-d tensor
        candidates = _indices_at_least(magnitude, threshold)
        if candidates.numel() >= k:
            _, chosen = torch.topk(magnitude.index_select(0, candidates), k, sorted=False)
            return candidates.index_select(0, chosen)
    return torch.topk(magnitude, k, sorted=False).indices


def _indices_at_least(values: Tensor, threshold: float) -> Tensor:
    """Ascending indices of the entries ``>= threshold`` (one of ``values``' entries, so the comparison is exact in
    any precision). On CPU NumPy finds the same indices as ``torch.nonzero`` in half the time (one thread on this
    project's VM, 1.3M entries of a top-k residual, 6 % passing: 1.9-2.2 ms against 4.2 ms), the largest single
    cost of a layer's selection."""
    if values.device.type == "cpu" and values.dtype != torch.bfloat16:  # NumPy has no bfloat16
        return torch.from_numpy(np.flatnonzero(values.numpy() >= threshold))
    return (values >= threshold).nonzero().squeeze(1)


def wire_bytes_per_selected(value_dtype: torch.dtype = torch.float32) -> int:
    """Bytes one selected entry costs on the wire: its value plus an int32 index (8 for fp32, 6 for bf16)."""
    return value_dtype.itemsize + 4


def pack_sparse(values: Tensor, indices: Tensor) -> Tensor:
    """One fp32 message ``[values | int32 indices]`` (so an exchange is a single ``all_gather``): fp32 values as
    fp32 (other widths converted), a 2-byte dtype (bf16) bit-packed two per word, padded to whole words."""
    index_words = indices.to(torch.int32).view(torch.float32)
    if values.dtype.itemsize != 2:
        return torch.cat([values.float(), index_words])
    raw = values.contiguous().view(torch.uint8)
    raw = torch.cat([raw, raw.new_zeros((-raw.numel()) % 4)])
    return torch.cat([raw.view(torch.float32), index_words])


def add_gathered_sparse(
    out: Tensor,
    gathered: Tensor,
    world_size: int,
    k: int | None = None,
    alpha: float = 1.0,
    value_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Scatter-add ``alpha`` times every rank's packed message (``gathered``: ``world_size`` messages back to back,
    each ``k`` entries with values of ``value_dtype``) into ``out``; ``k`` may be omitted for fp32 values.

    Each rank's values and indices are read in place (views of ``gathered``; only the values are converted to
    ``out``'s dtype), and the int32 indices go to ``index_add_`` as they are.
    """
    per_rank = gathered.view(world_size, -1)
    if k is None:
        if value_dtype != torch.float32:
            raise ValueError(f"add_gathered_sparse needs k for {value_dtype} values")
        k = per_rank.shape[1] // 2
    value_words = (k * value_dtype.itemsize + 3) // 4
    for message in per_rank:
        values = message[:value_words].view(torch.uint8)[: k * value_dtype.itemsize].view(value_dtype)
        indices = message[value_words : value_words + k].view(torch.int32)
        out.index_add_(0, indices, values.to(out.dtype), alpha=alpha)
    return out
