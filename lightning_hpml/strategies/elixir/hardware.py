"""Measured speeds the plan search prices its choices with.

Elixir fits aggregate bandwidth and Adam-speed curves from profiling scripts (``profile/profile_bandwidth.py`` and
``profile_optimizer.py`` in hpcaitech/Elixir). Here the same four numbers are measured on the machine in a fraction
of a second when the strategy is set up: host-to-device and device-to-host copy bandwidth, and Adam update speed on
the host and on the device, plus the device-to-device copy bandwidth (the cost of a gather from a device-resident
master). On a CPU-only machine "device" and "host" are the same memory, so the numbers coincide
and offload choices only move the budget, not the time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

__all__ = ["HardwareProfile", "measure_hardware"]


@dataclass(frozen=True)
class HardwareProfile:
    """Bytes per second for copies, parameter elements per second for Adam."""

    h2d_bytes_per_s: float
    d2h_bytes_per_s: float
    d2d_bytes_per_s: float
    host_adam_elems_per_s: float
    device_adam_elems_per_s: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HardwareProfile:
        return cls(**{k: float(v) for k, v in data.items()})


def _best_seconds(fn, device: torch.device, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return max(best, 1e-9)


def _adam_speed(device: torch.device, numel: int) -> float:
    param = torch.nn.Parameter(torch.zeros(numel, device=device))
    param.grad = torch.full_like(param, 1e-3)
    optimizer = torch.optim.Adam([param], lr=1e-3)
    optimizer.step()  # allocate the state outside the timing
    return numel / _best_seconds(optimizer.step, device)


def measure_hardware(device: torch.device, probe_bytes: int = 16 * 2**20) -> HardwareProfile:
    """Time copies of ``probe_bytes`` and an Adam step of the same number of fp32 elements."""
    numel = probe_bytes // 4
    host = torch.empty(numel, pin_memory=device.type == "cuda")
    on_device = torch.empty(numel, device=device)
    h2d = probe_bytes / _best_seconds(lambda: on_device.copy_(host, non_blocking=True), device)
    d2h = probe_bytes / _best_seconds(lambda: host.copy_(on_device, non_blocking=True), device)
    other = torch.empty_like(on_device)
    d2d = probe_bytes / _best_seconds(lambda: other.copy_(on_device), device)
    host_adam = _adam_speed(torch.device("cpu"), numel)
    device_adam = host_adam if device.type == "cpu" else _adam_speed(device, numel)
    return HardwareProfile(h2d, d2h, d2d, host_adam, device_adam)
