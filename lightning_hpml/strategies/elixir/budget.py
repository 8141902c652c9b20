"""Accounting of the device memory Elixir's chunks use, checked against the budget.

On CUDA the caching allocator is the real limit; this ledger is what the plan search promised, so a run that would
break its plan stops with a clear error instead of an out-of-memory crash deep inside backward. On CPU (the compute
device is the CPU) the ledger *is* the device: eviction, offload and the search all run against it, which is how they
are tested without a GPU.
"""

from __future__ import annotations

__all__ = ["DeviceMemoryBudget", "ElixirMemoryError"]


class ElixirMemoryError(RuntimeError):
    """The chunk runtime needed more device memory than its budget allows."""


class DeviceMemoryBudget:
    """A byte ledger with a hard limit and a high-water mark.

    Args:
        limit_bytes: The most the chunks may hold on the device at once (``None``: unlimited).
    """

    def __init__(self, limit_bytes: int | None) -> None:
        if limit_bytes is not None and limit_bytes <= 0:
            raise ValueError(f"`limit_bytes` must be positive or None, got {limit_bytes!r}")
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self.peak_bytes = 0

    def can_reserve(self, nbytes: int) -> bool:
        return self.limit_bytes is None or self.used_bytes + nbytes <= self.limit_bytes

    def reserve(self, nbytes: int, what: str) -> None:
        """Book ``nbytes`` for ``what``; raise :class:`ElixirMemoryError` if that would pass the limit."""
        if not self.can_reserve(nbytes):
            raise ElixirMemoryError(
                f"device budget exceeded while allocating {what}: {self.used_bytes} B in use + {nbytes} B requested "
                f"> limit {self.limit_bytes} B. Raise `device_memory_limit` or let the plan search choose smaller "
                "chunks / fewer cache blocks."
            )
        self.used_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.used_bytes)

    def release(self, nbytes: int) -> None:
        if nbytes > self.used_bytes:
            raise RuntimeError(f"releasing {nbytes} B but only {self.used_bytes} B are booked (ledger out of sync)")
        self.used_bytes -= nbytes

    def reset_peak(self) -> None:
        self.peak_bytes = self.used_bytes

    def __repr__(self) -> str:
        return f"DeviceMemoryBudget(limit={self.limit_bytes}, used={self.used_bytes}, peak={self.peak_bytes})"
