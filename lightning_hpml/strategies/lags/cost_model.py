"""Alpha-beta cost of the two collectives LAGS uses, fitted on the live process group.

The paper and the official code model a collective as ``alpha + beta * bytes`` with ring-algorithm factors:
dense allreduce ``2(P-1)a + 2(P-1)/P * m * b``, sparse allgather ``log2(P) a + (P-1) * msg * b``. Instead of
fixing ``a`` and ``b`` (the official code hard-codes 1 GbE figures) this module times each collective at a few
message sizes on the real group and fits one line per collective, so the ring factors are absorbed into the fit:
``t_allreduce(bytes) = alpha_allreduce + beta_allreduce * bytes`` and
``t_allgather(bytes per rank) = alpha_allgather + beta_allgather * bytes``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

__all__ = ["DEFAULT_PROBE_BYTES", "LinkCost", "all_gather_single", "fit_line", "measure_link_cost"]

#: ``all_gather`` into one flat tensor (``all_gather_into_tensor`` is deprecated in recent torch releases).
all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

#: Message sizes (bytes per rank) timed at start-up: 16 KiB to 1 MiB.
DEFAULT_PROBE_BYTES: tuple[int, ...] = (16 * 1024, 128 * 1024, 1024 * 1024)


@dataclass(frozen=True)
class LinkCost:
    """Fitted seconds = alpha + beta * bytes for allreduce (whole tensor) and allgather (bytes each rank sends)."""

    alpha_allreduce: float
    beta_allreduce: float
    alpha_allgather: float
    beta_allgather: float

    def allreduce_time(self, nbytes: float) -> float:
        return self.alpha_allreduce + self.beta_allreduce * nbytes

    def allgather_time(self, nbytes: float) -> float:
        return self.alpha_allgather + self.beta_allgather * nbytes

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_line(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``seconds = alpha + beta * size`` with both coefficients clamped at zero."""
    if len(sizes) != len(seconds) or len(sizes) < 2:
        raise ValueError(f"need at least two (size, time) pairs, got {len(sizes)} sizes and {len(seconds)} times")
    mean_x, mean_y = statistics.fmean(sizes), statistics.fmean(seconds)
    var_x = sum((x - mean_x) ** 2 for x in sizes)
    if var_x == 0:
        raise ValueError(f"probe sizes must differ, got {list(sizes)}")
    beta = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(sizes, seconds, strict=True)) / var_x)
    alpha = max(0.0, mean_y - beta * mean_x)
    return alpha, beta


def measure_link_cost(
    group: dist.ProcessGroup | None = None,
    probe_bytes: Sequence[int] = DEFAULT_PROBE_BYTES,
    repeats: int = 3,
    device: torch.device | str = "cpu",
) -> LinkCost:
    """Time allreduce and allgather at ``probe_bytes`` (median of ``repeats``) and fit a :class:`LinkCost`.

    A collective: every rank of ``group`` must call it. Each rank's timings are replaced by the slowest rank's
    (allreduce MAX), so every rank fits the same line.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    world = dist.get_world_size(group)
    timings = torch.zeros(2, len(probe_bytes), dtype=torch.float64)
    for column, nbytes in enumerate(probe_bytes):
        numel = max(1, int(nbytes) // 4)
        tensor = torch.ones(numel, dtype=torch.float32, device=device)
        gathered = torch.empty(world * numel, dtype=torch.float32, device=device)
        timings[0, column] = _median_seconds(
            lambda tensor=tensor: dist.all_reduce(tensor, group=group), repeats, device
        )
        timings[1, column] = _median_seconds(
            lambda out=gathered, tensor=tensor: all_gather_single(out, tensor, group=group), repeats, device
        )
    timings = timings.to(device)
    dist.all_reduce(timings, op=dist.ReduceOp.MAX, group=group)
    timings = timings.cpu().tolist()
    sizes = [float(max(1, int(b) // 4) * 4) for b in probe_bytes]
    alpha_ar, beta_ar = fit_line(sizes, timings[0])
    alpha_ag, beta_ag = fit_line(sizes, timings[1])
    return LinkCost(alpha_ar, beta_ar, alpha_ag, beta_ag)


def _median_seconds(collective, repeats: int, device: torch.device | str) -> float:
    collective()  # warm-up: connection set-up and allocator
    samples = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        collective()
        _synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
