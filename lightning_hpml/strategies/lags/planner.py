"""Adaptive per-group density: hide each group's exchange behind the backward compute that remains.

LAGS (Shi et al., ECAI 2020) picks each layer's density from its communication-to-computation ratio. The official
code's rule (``utils.predict_density_with_size_and_computation``) is ``rho = (t_comp - log2(P) a) / (2(P-1) b m)``
with a fixed alpha-beta model, but as released it returns a constant 0.001. This planner is live and models the
network as one serial channel, walked in the order the groups' gradients become final:

- a group can start when its gradients are ready and the previous exchange has finished (``start``);
- its budget is the compute left until the next group is ready (``window = ready[i+1] - start``); the last group
  has nothing left to hide behind;
- if a dense allreduce fits the window it goes dense (no compression error at all); otherwise the density is the
  largest whose allgather fits, clamped to ``[density_min, density_max]``; and if that sparse exchange would still
  cost at least as much as a dense allreduce, or (given ``world_size`` P) put at least as many bytes on the wire
  (density >= 1 / P: a ring allgather of value + index pairs sends ``(P-1) 8 k`` bytes per rank, a ring allreduce
  ``2 (P-1) / P 4 n``), the group goes dense. The byte rule keeps a noisy time fit from choosing a sparse exchange
  that saves nothing.

``density_max`` (1: no cap) bounds the sparse densities: the alpha-beta model prices only the wire, while
selection, the scatter-add and the collective's own CPU work grow with ``k`` and compete with backward, most of all
on CPU-only (Gloo) runs. A cap such as 0.05 saves that CPU at the cost of more compression error.

:func:`warmup_density` is the dense warm-up of Deep Gradient Compression (Lin et al., "Deep Gradient Compression:
Reducing the Communication Bandwidth for Distributed Training", ICLR 2018, arXiv 1712.01887): the density a
group actually uses starts at 1 and decays exponentially to its planned value over the first steps, so the early
phase of training, where the gradients change fastest and stale residuals hurt most, is not sparsified hard.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cost_model import LinkCost
from .topk import num_selected

__all__ = ["VALUE_BYTES", "WIRE_BYTES_PER_SELECTED", "plan_densities", "sparse_sends_more", "warmup_density"]

#: A dense gradient element on the wire (fp32).
VALUE_BYTES = 4
#: A selected element on the wire: fp32 value + int32 index.
WIRE_BYTES_PER_SELECTED = 8


def plan_densities(
    numels: Sequence[int],
    ready_times: Sequence[float],
    cost: LinkCost,
    density_min: float,
    density_max: float = 1.0,
    world_size: int | None = None,
    always_dense: Sequence[bool] | None = None,
    bytes_per_selected: int = WIRE_BYTES_PER_SELECTED,
    always_dense_bytes: Sequence[int | None] | None = None,
) -> list[float]:
    """Density per group (1.0 = dense allreduce), from group sizes and when each group's gradients were final.

    ``ready_times`` are seconds from any common origin (the profiled mean per group); ``world_size`` enables the
    byte rule (see the module docstring); groups marked in ``always_dense`` stay dense, and their exchange occupies
    the channel like any other: an fp32 allreduce, or, where ``always_dense_bytes`` gives a size, an allgather of a
    message that large (the quantised small tensors); ``bytes_per_selected``: value + index bytes of one sent entry.
    """
    if len(numels) != len(ready_times):
        raise ValueError(f"got {len(numels)} group sizes but {len(ready_times)} ready times")
    if not 0.0 < density_min <= density_max <= 1.0:
        raise ValueError(f"need 0 < density_min <= density_max <= 1, got {density_min} and {density_max}")
    order = sorted(range(len(numels)), key=lambda i: ready_times[i])
    densities = [1.0] * len(numels)
    channel_free_at = float("-inf")
    for position, group in enumerate(order):
        numel = numels[group]
        start = max(ready_times[group], channel_free_at)
        next_ready = ready_times[order[position + 1]] if position + 1 < len(order) else start
        window = max(0.0, next_ready - start)
        forced = always_dense is not None and always_dense[group]
        quantized_bytes = always_dense_bytes[group] if forced and always_dense_bytes is not None else None
        # the group's dense exchange: an fp32 allreduce, or the all_gather of its quantised message
        dense_time = (
            cost.allreduce_time(VALUE_BYTES * numel)
            if quantized_bytes is None
            else cost.allgather_time(quantized_bytes)
        )
        fits = forced or dense_time <= window
        density = (
            1.0 if fits else _density_for_window(window, numel, cost, density_min, density_max, bytes_per_selected)
        )
        sparse_time = cost.allgather_time(bytes_per_selected * num_selected(numel, density))
        more_bytes = world_size is not None and sparse_sends_more(density, world_size, bytes_per_selected)
        if density < 1.0 and (sparse_time >= dense_time or more_bytes):
            density = 1.0
        densities[group] = density
        spent = dense_time if density == 1.0 else sparse_time
        channel_free_at = start + spent
    return densities


def sparse_sends_more(density: float, world_size: int, bytes_per_selected: int = WIRE_BYTES_PER_SELECTED) -> bool:
    """Whether a ring allgather of ``density`` of a group's entries puts at least the bytes of a ring allreduce of the
    whole group on the wire: ``(P-1) b d n >= 2 (P-1) / P 4 n``."""
    return density * world_size * bytes_per_selected >= 2 * VALUE_BYTES


def _density_for_window(
    window: float, numel: int, cost: LinkCost, density_min: float, density_max: float, bytes_per_selected: int
) -> float:
    """Largest density whose allgather fits ``window``, clamped to ``[density_min, density_max]``."""
    payload_time = window - cost.alpha_allgather
    if payload_time <= 0:
        return density_min
    if cost.beta_allgather == 0:
        return density_max
    density = payload_time / (cost.beta_allgather * bytes_per_selected * numel)
    return min(density_max, max(density_min, density))


def warmup_density(target: float, step: int, warmup_steps: int) -> float:
    """Density at optimizer step ``step`` (from 0) of a group planned at ``target``: ``target ** (step / warmup_steps)``.

    Exponential decay from dense (step 0) to ``target`` (step ``warmup_steps`` and later), DGC's warm-up made
    continuous: DGC lowers the density fourfold per epoch (0.25, 0.0625, 0.015625, 0.004, 0.001) over its first
    four epochs; here every step takes the same factor, ``target ** (1 / warmup_steps)``. A pure function of the
    step count, so a resumed run (which restores the count) continues the schedule exactly.
    """
    if warmup_steps < 0 or step < 0:
        raise ValueError(f"need step >= 0 and warmup_steps >= 0, got {step} and {warmup_steps}")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {target}")
    if step >= warmup_steps:
        return target
    return target ** (step / warmup_steps)
