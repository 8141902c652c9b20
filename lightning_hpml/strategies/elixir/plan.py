"""The plan: chunk size, cache blocks and per-chunk offload, searched against the device budget.

Follows Elixir's optimal search (``search/simulator.py`` and ``SearchOptimal.configure_rcache_size`` on
hpcaitech/ColossalAI ``feature/elixir``): for each candidate chunk size, pack the parameters in first-use order, count
the gathers a cache of ``n`` blocks needs (Belady simulation of the profiled access order), spend what is left of the
budget on keeping fp32 master, gradient and optimizer shards on the device (most-gathered chunks first, since their
gathers then skip the host link), and price everything with measured speeds. The cheapest modelled step wins.

Differences from Elixir: the candidate sizes are a geometric grid from the largest parameter up (Elixir walks
32-96 MiB in fine steps, sizes meant for billion-parameter models), and cache size and offload are searched jointly
instead of by the paper's closed-form "cache first or offload first" test; the modelled time is reported so the
choice can be checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from .cache_simulator import access_sequence, count_gathers, max_chunks_per_call
from .chunk import ChunkKind
from .hardware import HardwareProfile
from .packing import ChunkSpec, pack_public, padded_numel
from .profiler import StepProfile

__all__ = ["ElixirPlan", "search_plan"]

OFFLOAD_CHOICES = ("auto", "cpu", "device")


@dataclass
class ElixirPlan:
    """Everything needed to rebuild the same chunk layout (it is stored in checkpoints)."""

    chunk_numel: int
    cache_blocks: int
    compute_bytes_per_elem: int
    chunks: list[ChunkSpec]
    access: list[int] = field(default_factory=list)  # public-chunk access order of one step (for eviction)
    budget_bytes: int | None = None
    activation_bytes: int = 0
    modelled_gathers: int = 0
    modelled_step_seconds: float = 0.0

    @property
    def public(self) -> list[int]:
        return [i for i, c in enumerate(self.chunks) if c.kind is ChunkKind.PUBLIC]

    def layout(self) -> list[tuple]:
        """What must match for shards saved under one plan to be loaded under another."""
        return [(c.kind.value, tuple(c.param_names), c.numel) for c in self.chunks]

    def device_bytes(self, state_factor: int, world_size: int) -> dict[str, int]:
        """Planned device memory by kind (payload of the cache and resident chunks; device-resident shards)."""
        block = self.chunk_numel * self.compute_bytes_per_elem
        resident = sum(c.numel * self.compute_bytes_per_elem for c in self.chunks if c.kind is not ChunkKind.PUBLIC)
        shards = sum(
            (c.numel // (1 if c.kind is ChunkKind.LOCAL else world_size)) * 4 * (2 + state_factor)
            for c in self.chunks
            if c.master_on_device
        )
        return {"cache": self.cache_blocks * block, "resident": resident, "shards": shards}

    def to_dict(self) -> dict:
        return {
            "chunk_numel": self.chunk_numel,
            "cache_blocks": self.cache_blocks,
            "compute_bytes_per_elem": self.compute_bytes_per_elem,
            "chunks": [c.to_dict() for c in self.chunks],
            "access": list(self.access),
            "budget_bytes": self.budget_bytes,
            "activation_bytes": self.activation_bytes,
            "modelled_gathers": self.modelled_gathers,
            "modelled_step_seconds": self.modelled_step_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ElixirPlan:
        return cls(
            chunk_numel=int(data["chunk_numel"]),
            cache_blocks=int(data["cache_blocks"]),
            compute_bytes_per_elem=int(data["compute_bytes_per_elem"]),
            chunks=[ChunkSpec.from_dict(c) for c in data["chunks"]],
            access=[int(i) for i in data["access"]],
            budget_bytes=data["budget_bytes"],
            activation_bytes=int(data["activation_bytes"]),
            modelled_gathers=int(data["modelled_gathers"]),
            modelled_step_seconds=float(data["modelled_step_seconds"]),
        )

    def table(self, state_factor: int, world_size: int) -> Table:
        """The plan as a rich table (printed by the strategy on rank 0)."""
        kinds = [c.kind for c in self.chunks]
        planned = self.device_bytes(state_factor, world_size)
        table = Table(title="Elixir plan", show_header=True)
        table.add_column("item")
        table.add_column("value", justify="right")
        mib = 2**20
        rows = [
            ("chunk size (elements)", f"{self.chunk_numel:,}"),
            (
                "public / replicated / local chunks",
                f"{kinds.count(ChunkKind.PUBLIC)} / {kinds.count(ChunkKind.REPLICATED)} / {kinds.count(ChunkKind.LOCAL)}",
            ),
            ("cache blocks", str(self.cache_blocks)),
            ("chunks with fp32 shards offloaded to CPU", str(sum(not c.master_on_device for c in self.chunks))),
            ("device budget", "unlimited" if self.budget_bytes is None else f"{self.budget_bytes / mib:.2f} MiB"),
            (
                "planned cache + resident + shards",
                f"{planned['cache'] / mib:.2f} + {planned['resident'] / mib:.2f} + {planned['shards'] / mib:.2f} MiB",
            ),
            ("activations (profiled)", f"{self.activation_bytes / mib:.2f} MiB"),
            ("modelled gathers per step", str(self.modelled_gathers)),
            ("modelled transfer + update time per step", f"{self.modelled_step_seconds * 1e3:.2f} ms"),
        ]
        for row in rows:
            table.add_row(*row)
        return table

    def print(self, state_factor: int, world_size: int) -> None:
        Console().print(self.table(state_factor, world_size))


def _candidate_sizes(largest: int, total: int, world_size: int) -> list[int]:
    sizes = set()
    size = float(largest)
    while size < total * 1.5:
        sizes.add(padded_numel(int(size), world_size))
        size *= 1.5
    sizes.add(padded_numel(max(largest, total), world_size))
    return sorted(sizes)


def _block_counts(low: int, high: int, limit: int = 48) -> list[int]:
    if high - low < limit:
        return list(range(low, high + 1))
    step = (high - low) / (limit - 1)
    return sorted({low + round(i * step) for i in range(limit)})


def search_plan(
    order: list[str],
    numels: Mapping[str, int],
    kinds: Mapping[str, ChunkKind],
    profile: StepProfile,
    hardware: HardwareProfile,
    *,
    world_size: int,
    compute_bytes_per_elem: int,
    state_factor: int,
    budget_bytes: int | None,
    chunk_numel: int | None = None,
    cache_blocks: int | None = None,
    offload: str = "auto",
    reserve_activations: bool = True,
) -> ElixirPlan:
    """Choose chunk size, cache blocks and offload (see the module docstring); ``order`` is first-use order.

    ``chunk_numel``, ``cache_blocks`` and ``offload`` ("cpu"/"device") pin the corresponding choice.
    ``reserve_activations`` leaves the profiled activation bytes and one parameter's gradient out of the budget (on
    CUDA they share the device; in CPU mode the budget is the chunk ledger alone).
    Raises ValueError when no choice fits the budget, saying how much would be needed.
    """
    if offload not in OFFLOAD_CHOICES:
        raise ValueError(f"`offload` must be one of {OFFLOAD_CHOICES}, got {offload!r}")
    public_names = [n for n in order if kinds[n] is ChunkKind.PUBLIC]
    special = {kind: [n for n in order if kinds[n] is kind] for kind in (ChunkKind.REPLICATED, ChunkKind.LOCAL)}
    total_public = sum(numels[n] for n in public_names)
    largest = max((numels[n] for n in public_names), default=world_size)
    sizes = (
        [padded_numel(chunk_numel, world_size)] if chunk_numel else _candidate_sizes(largest, total_public, world_size)
    )
    # autograd's .grad of one parameter exists for a moment before it is copied into its chunk: workspace, like the
    # activations, so it is reserved only where the budget is real device memory
    transient = max(numels.values(), default=0) * compute_bytes_per_elem if reserve_activations else 0
    activations = profile.activation_bytes if reserve_activations else 0

    best: ElixirPlan | None = None
    smallest_need = math.inf
    for size in sizes:
        groups = pack_public(public_names, numels, size) if public_names else []
        specs = [ChunkSpec(ChunkKind.PUBLIC, g, size) for g in groups]
        for kind, names in special.items():
            if names:
                multiple = 1 if kind is ChunkKind.LOCAL else world_size
                specs.append(ChunkSpec(kind, names, padded_numel(sum(numels[n] for n in names), multiple)))
        chunk_of = {name: i for i, spec in enumerate(specs) for name in spec.param_names}
        public = {i for i, s in enumerate(specs) if s.kind is ChunkKind.PUBLIC}
        sequence = access_sequence(profile.module_calls, chunk_of, public)
        block_bytes = size * compute_bytes_per_elem
        resident = sum(s.numel * compute_bytes_per_elem for s in specs if s.kind is not ChunkKind.PUBLIC)
        min_blocks = min(len(public), max(2, max_chunks_per_call(profile.module_calls, chunk_of, public) + 1))
        if budget_bytes is None:
            available = math.inf
        else:
            available = budget_bytes - activations - transient - resident
        max_blocks = len(public) if available == math.inf else min(len(public), int(available // block_bytes))
        if cache_blocks is not None:
            min_blocks = max_blocks = min(cache_blocks, len(public)) if public else 0
        need = activations + transient + resident + min_blocks * block_bytes
        if max_blocks < min_blocks or (budget_bytes is not None and need > budget_bytes):
            smallest_need = min(smallest_need, need)
            continue
        for n_blocks in _block_counts(min_blocks, max_blocks) if public else [0]:
            gathers = count_gathers(sequence, n_blocks) if public else {}
            leftover = available - n_blocks * block_bytes
            candidate = _place_shards(
                specs, gathers, leftover, offload, hardware, world_size, state_factor, compute_bytes_per_elem
            )
            plan = ElixirPlan(
                size,
                n_blocks,
                compute_bytes_per_elem,
                candidate[0],
                sequence,
                budget_bytes,
                profile.activation_bytes,
                sum(gathers.values()),
                candidate[1],
            )
            if best is None or plan.modelled_step_seconds < best.modelled_step_seconds * (1 - 1e-9):
                best = plan
    if best is None:
        raise ValueError(
            f"no Elixir plan fits the device budget of {budget_bytes} B: the smallest layout needs about "
            f"{int(smallest_need)} B (activations {activations} B, largest parameter gradient "
            f"{transient} B, resident chunks and two cache blocks). Raise `device_memory_limit`."
        )
    return best


def _place_shards(specs, gathers, leftover, offload, hardware, world_size, state_factor, elem_bytes):
    """Decide which chunks keep fp32 shards on the device; return (specs, modelled seconds per step)."""
    placed = [ChunkSpec(s.kind, s.param_names, s.numel, master_on_device=False) for s in specs]
    shard = [s.numel // (1 if s.kind is ChunkKind.LOCAL else world_size) for s in specs]
    state_bytes = [n * 4 * (2 + state_factor) for n in shard]
    if offload == "device" or (offload == "auto" and leftover == math.inf):
        for spec in placed:
            spec.master_on_device = True
    elif offload == "auto":
        # most-gathered first: their gathers then come from device memory instead of over the host link
        for i in sorted(range(len(placed)), key=lambda i: (-gathers.get(i, 1), i)):
            if state_bytes[i] <= leftover:
                placed[i].master_on_device = True
                leftover -= state_bytes[i]
    if offload == "device" and leftover != math.inf and sum(state_bytes) > leftover:
        raise ValueError("offload='device' but the fp32 shards do not fit the budget next to the cache")
    seconds = 0.0
    for i, spec in enumerate(placed):
        loads = gathers.get(i, 1)
        payload = spec.numel * elem_bytes
        if spec.master_on_device:
            seconds += loads * payload / hardware.d2d_bytes_per_s + shard[i] / hardware.device_adam_elems_per_s
            seconds += shard[i] * 4 / hardware.d2d_bytes_per_s
        else:
            seconds += loads * shard[i] * 4 / hardware.h2d_bytes_per_s + shard[i] / hardware.host_adam_elems_per_s
            seconds += shard[i] * 4 / hardware.d2h_bytes_per_s
    return placed, seconds
