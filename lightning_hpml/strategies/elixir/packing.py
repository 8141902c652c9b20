"""Which parameters go into which chunk: first-use order, fixed-size public chunks, resident ones for the rest.

Elixir packs the public parameters greedily, in the order the training step first uses them, into chunks of one
searched size; a parameter is never split, and a new chunk starts when the next one does not fit
(``search/utils.py`` on hpcaitech/ColossalAI ``feature/elixir``). A parameter registered in more than one module
(tied embeddings) gets a resident chunk of its own, kept gathered, because its uses are far apart in the step. The
per-module policy moves whole modules out of the public chunks: ``"replicated"`` (resident, sharded master, like a
tied weight) or ``"local"`` (expert-parallel: this rank's own copy, never communicated).

Adding a parallel pattern: a pattern is a :class:`~.chunk.ChunkKind` plus what a chunk of that kind does in its four
collectives (gather, release, reduce, full weights for checkpoints). Add the kind, give it a policy name in
:data:`POLICIES` and :func:`assign_kinds`, decide in :class:`~.chunk.Chunk` which process group it shards over
(``LOCAL`` uses none; a tensor- or expert-parallel kind would pass its own sub-group) and whether it is evictable,
and let :func:`~.plan.search_plan` lay it out (resident kinds get one chunk per kind today). The runtime, optimizer
view and checkpoints then work unchanged, since they only talk to chunks.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from .chunk import ChunkKind

__all__ = ["POLICIES", "ChunkSpec", "assign_kinds", "pack_public", "padded_numel", "trainable_parameters"]

#: Values accepted in a module policy (module-name pattern -> policy).
POLICIES = ("chunked", "replicated", "local")


@dataclass
class ChunkSpec:
    """One chunk of a plan: its kind, its parameters (by name, in layout order), padded size and offload choice."""

    kind: ChunkKind
    param_names: list[str]
    numel: int
    master_on_device: bool = True

    def to_dict(self) -> dict:
        return {
            "kind": self.kind.value,
            "param_names": list(self.param_names),
            "numel": self.numel,
            "master_on_device": self.master_on_device,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ChunkSpec:
        return cls(
            ChunkKind(data["kind"]), list(data["param_names"]), int(data["numel"]), bool(data["master_on_device"])
        )


def trainable_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters by their first qualified name, in registration order (tied ones once)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def padded_numel(numel: int, multiple: int) -> int:
    return -(-numel // multiple) * multiple


def _multi_used(module: nn.Module) -> set[int]:
    counts = Counter(id(p) for _, p in module.named_parameters(remove_duplicate=False))
    return {pid for pid, n in counts.items() if n > 1}


def assign_kinds(module: nn.Module, policy: Mapping[str, str] | None = None) -> dict[str, ChunkKind]:
    """Chunk kind of every trainable parameter: policy patterns first, then tied parameters become replicated.

    ``policy`` maps module-name patterns (``fnmatch``, e.g. ``"blocks.*.moe.experts"``) to one of
    :data:`POLICIES`; a pattern applies to the whole sub-tree of every module it matches. Later patterns win.
    """
    params = trainable_parameters(module)
    kinds = {name: ChunkKind.PUBLIC for name in params}
    by_id = {id(p): name for name, p in params.items()}
    for pattern, value in (policy or {}).items():
        if value not in POLICIES:
            raise ValueError(f"policy for {pattern!r} must be one of {POLICIES}, got {value!r}")
        matched = [m for name, m in module.named_modules() if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ValueError(f"policy pattern {pattern!r} matches no module of {type(module).__name__}")
        kind = {"chunked": ChunkKind.PUBLIC, "replicated": ChunkKind.REPLICATED, "local": ChunkKind.LOCAL}[value]
        for sub in matched:
            for p in sub.parameters():
                if id(p) in by_id:
                    kinds[by_id[id(p)]] = kind
    for pid in _multi_used(module):
        name = by_id.get(pid)
        if name is not None and kinds[name] is ChunkKind.PUBLIC:
            kinds[name] = ChunkKind.REPLICATED
    return kinds


def pack_public(order: Iterable[str], numels: Mapping[str, int], chunk_numel: int) -> list[list[str]]:
    """Greedy first-fit in ``order``: a new chunk starts when the next parameter does not fit."""
    chunks: list[list[str]] = []
    used = chunk_numel
    for name in order:
        n = numels[name]
        if n > chunk_numel:
            raise ValueError(f"parameter {name!r} has {n} elements, more than the chunk size {chunk_numel}")
        if used + n > chunk_numel:
            chunks.append([])
            used = 0
        chunks[-1].append(name)
        used += n
    return chunks
