"""Small always-dense groups at 8 or 1 bit per entry, with error feedback, so every entry is sent every step.

Top-k starves an entry for about ``1/density`` steps and then releases it in one burst, which adaptive optimizers
(Adam normalises each entry by its running second moment) absorb badly; the small tensors (biases, normalisation
weights, narrow layers) are where that costs the most accuracy (``benchmarks/README.md``). Sending them dense every
step fixes the accuracy but costs 4 bytes per entry at the very end of backward, when nothing is left to hide the
exchange behind. Quantising them keeps "every entry, every step" at 1/4 (int8) or 1/32 (sign) of the bytes:

- ``8``: per member (tensor) ``s = max|a| / 127``, ``q = round(a / s)`` as int8;
- ``1``: per member ``s = mean|a|``, ``q = sign(a)`` packed 8 per byte (the scaled sign of EF-SignSGD: Karimireddy,
  Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and other Gradient Compression Schemes", ICML 2019).

``a = residual + g``; the residual keeps ``a - q s``, as for top-k, so nothing is lost, only delayed by a fraction of
an entry. Ranks exchange ``[scales fp32 | payload]`` with one ``all_gather`` (quantised values of different ranks
have different scales, so they cannot be summed by an allreduce) and each adds ``(1/P) sum_p q_p s_p``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["QUANTIZED_BITS", "add_gathered_quantized", "message_words", "quantize_"]

#: Bit widths of the quantised exchange (32 means a plain fp32 allreduce, handled by the reducer).
QUANTIZED_BITS = (8, 1)


@functools.cache
def _bit_weights(device: torch.device) -> Tensor:
    """``[1, 2, ..., 128]`` as uint8 on ``device``, made once per device (not per step)."""
    return torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=device)


def message_words(numel: int, members: int, bits: int) -> int:
    """fp32 words of one rank's message: ``members`` scales and ``numel`` entries at ``bits`` each, padded."""
    return members + math.ceil(math.ceil(numel * bits / 8) / 4)


def quantize_(accumulated: Tensor, sizes: Sequence[int], bits: int, scale_factor: float = 1.0) -> Tensor:
    """Quantise ``accumulated`` (fp32; members of ``sizes`` elements back to back) per member, leave the error in it
    (the new residual), return the message.

    ``scale_factor`` multiplies the scales on the wire only (the AMP loss scale: the residual stays in gradient
    units while the receivers get ``scale_factor`` times the gradient, as the other exchanges deliver).
    """
    _check_bits(bits)
    magnitude = accumulated.abs()
    if bits == 8:
        scales = _per_member(magnitude, sizes, "amax") / 127.0
        per_entry = _per_entry(scales, sizes)
        q = torch.div(accumulated, per_entry.clamp_min(torch.finfo(torch.float32).tiny)).round_().clamp_(-127, 127)
        accumulated.sub_(q * per_entry)
        payload = q.to(torch.int8).view(torch.uint8)
    else:
        scales = _per_member(magnitude, sizes, "mean")
        positive = accumulated >= 0
        per_entry = _per_entry(scales, sizes)
        accumulated.sub_(torch.where(positive, per_entry, -per_entry))
        payload = _pack_bits(positive)
    wire_scales = (scales * scale_factor).float().view(torch.uint8)
    raw = torch.cat([wire_scales, payload])
    words = message_words(accumulated.numel(), len(sizes), bits)
    return torch.cat([raw, raw.new_zeros(4 * words - raw.numel())]).view(torch.float32)


def add_gathered_quantized(
    out: Tensor, gathered: Tensor, world_size: int, sizes: Sequence[int], bits: int, alpha: float = 1.0
) -> Tensor:
    """Add ``alpha`` times every rank's dequantised message (``gathered``: the messages back to back) into ``out``."""
    _check_bits(bits)
    numel, members = out.numel(), len(sizes)
    raw = gathered.view(world_size, -1).view(torch.uint8)
    for row in raw:
        scales = row[: 4 * members].contiguous().view(torch.float32)
        payload = row[4 * members :]
        if bits == 8:
            q = payload[:numel].view(torch.int8).to(out.dtype)
        else:
            q = _unpack_bits(payload, numel).to(out.dtype).mul_(2).sub_(1)
        out.addcmul_(q, _per_entry(scales.to(out.dtype), sizes), value=alpha)
    return out


def _per_member(values: Tensor, sizes: Sequence[int], reduce: str) -> Tensor:
    """``reduce`` (``"amax"`` or ``"mean"``) of each member's slice. A loop over the slices: a group has a handful
    of members, and ``scatter_reduce_`` over a per-entry member index took twice as long (0.12 ms against 0.06 ms
    for 78k entries in 5 members on one thread)."""
    parts = values.split(list(sizes))
    return torch.stack([getattr(part, reduce)() if part.numel() else part.new_zeros(()) for part in parts])


def _per_entry(scales: Tensor, sizes: Sequence[int]) -> Tensor:
    """Each member's scale repeated over its entries (a third of ``index_select``'s time for 78k entries)."""
    return torch.cat([scale.expand(size) for scale, size in zip(scales, sizes, strict=True)])


def _check_bits(bits: int) -> None:
    if bits not in QUANTIZED_BITS:
        raise ValueError(f"quantised exchange supports {QUANTIZED_BITS} bits per entry, got {bits}")


def _pack_bits(flags: Tensor) -> Tensor:
    padded = torch.zeros(math.ceil(flags.numel() / 8) * 8, dtype=torch.uint8, device=flags.device)
    padded[: flags.numel()] = flags
    return (padded.view(-1, 8) * _bit_weights(flags.device)).sum(1, dtype=torch.uint8)


def _unpack_bits(packed: Tensor, numel: int) -> Tensor:
    bits = packed[: math.ceil(numel / 8)].unsqueeze(1).bitwise_and(_bit_weights(packed.device)).ne(0)
    return bits.reshape(-1)[:numel]
