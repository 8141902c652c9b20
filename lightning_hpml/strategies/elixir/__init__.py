"""Elixir: chunk-based heterogeneous CPU/GPU memory management as a Lightning strategy (arXiv 2212.05339).

Pieces, one per file: :mod:`.chunk` (a packed, sharded chunk), :mod:`.packing` (which parameter goes where),
:mod:`.profiler` (access order and activation size of one step), :mod:`.cache_simulator` (Belady gathers),
:mod:`.hardware` (measured speeds), :mod:`.plan` (the search), :mod:`.runtime` (hooks, cache, eviction, reduction),
:mod:`.optimizer` (the user's optimizer over flat shards), :mod:`.loss_scaler`, :mod:`.precision` and
:mod:`.strategy`.
"""

from .budget import DeviceMemoryBudget, ElixirMemoryError
from .chunk import ChunkKind
from .hardware import HardwareProfile, measure_hardware
from .plan import ElixirPlan, search_plan
from .precision import ElixirPrecision
from .strategy import ElixirStrategy

__all__ = [
    "ChunkKind",
    "DeviceMemoryBudget",
    "ElixirMemoryError",
    "ElixirPlan",
    "ElixirPrecision",
    "ElixirStrategy",
    "HardwareProfile",
    "measure_hardware",
    "search_plan",
]
