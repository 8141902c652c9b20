"""How many chunk gathers a step costs for a given cache size: Belady's furthest-next-use policy, simulated.

The runtime evicts by the same rule (``ChunkRuntime._choose_victim``), so the simulated count is what a run does
when its access order matches the profile. Elixir simulates this in C++ (``simulator.cpp move_count``); a step here
has at most a few thousand accesses, so plain Python is fast enough.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["access_sequence", "count_gathers", "max_chunks_per_call"]


def access_sequence(module_calls: Sequence[Sequence[str]], chunk_of: dict[str, int], public: set[int]) -> list[int]:
    """The public-chunk accesses of one step: each forward module call, then each chunk once in backward.

    Backward touches a chunk first where forward used it last, and keeps it until its gradients are reduced, so
    one access per chunk in reverse order of last forward use models it.
    """
    forward: list[int] = []
    for call in module_calls:
        for index in dict.fromkeys(chunk_of[name] for name in call):
            if index in public:
                forward.append(index)
    last_use: dict[int, int] = {}
    for position, index in enumerate(forward):
        last_use[index] = position
    backward = sorted(last_use, key=last_use.__getitem__, reverse=True)
    return forward + backward


def max_chunks_per_call(module_calls: Sequence[Sequence[str]], chunk_of: dict[str, int], public: set[int]) -> int:
    """The most public chunks one module call needs gathered at once."""
    counts = [len({chunk_of[n] for n in call} & public) for call in module_calls]
    return max(counts, default=0)


def count_gathers(sequence: Sequence[int], n_blocks: int) -> Counter:
    """Gathers per chunk needed to serve ``sequence`` from an empty cache of ``n_blocks`` chunks (Belady)."""
    if n_blocks < 1:
        raise ValueError(f"`n_blocks` must be at least 1, got {n_blocks}")
    infinity = len(sequence)
    next_use = [infinity] * len(sequence)
    seen: dict[int, int] = {}
    for position in range(len(sequence) - 1, -1, -1):
        next_use[position] = seen.get(sequence[position], infinity)
        seen[sequence[position]] = position
    cache: dict[int, int] = {}  # chunk -> position of its next use
    gathers: Counter = Counter()
    for position, chunk in enumerate(sequence):
        if chunk not in cache:
            gathers[chunk] += 1
            if len(cache) >= n_blocks:
                del cache[max(cache, key=cache.__getitem__)]
        cache[chunk] = next_use[position]
    return gathers
