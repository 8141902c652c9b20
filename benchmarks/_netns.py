"""A Linux network namespace whose loopback is rate-limited, to emulate a slow link between local processes.

Processes started with ``ip netns exec <name>`` see only the namespace's own ``lo``. A token-bucket filter
(``tc qdisc ... tbf``) on that ``lo`` caps the bytes per second that all of them together can send, in both
directions (loopback has a single egress queue), and the namespace's ``/proc/net/dev`` counts exactly their
traffic. ``netem`` (delay, loss) does not work on this kernel's loopback, so only the rate is emulated.
Creating namespaces needs root (``CAP_SYS_ADMIN``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["check_netns_available", "lo_tx_bytes", "throttled_namespace"]


def check_netns_available() -> str | None:
    """``None`` if this process can create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "creating network namespaces needs root (ip netns add)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"missing {' and '.join(missing)} (package iproute2)"
    return None


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")


@contextlib.contextmanager
def throttled_namespace(rate_mbit: float | None, *, mtu: int, burst_bytes: int, limit_bytes: int) -> Iterator[str]:
    """Create a uniquely named namespace with ``lo`` up (and a ``tbf`` at ``rate_mbit``), yield its name, delete it.

    The namespace is deleted on any exit, Ctrl-C included. ``mtu`` is set on ``lo`` first because a ``tbf`` drops
    packets larger than its burst, and the default loopback MTU (64 KiB) would force a burst that lets a whole
    small gradient message through at memory speed.
    """
    name = f"lagsbw-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "mtu", str(mtu), "up")
        if rate_mbit is not None:
            _run(
                "ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
                "rate", f"{rate_mbit:g}mbit", "burst", str(burst_bytes), "limit", str(limit_bytes),
            )  # fmt: skip
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def lo_tx_bytes(proc_net_dev: Path = Path("/proc/net/dev")) -> int:
    """Bytes sent on ``lo`` in this process's network namespace (headers included), from ``/proc/net/dev``."""
    for line in proc_net_dev.read_text().splitlines():
        interface, _, counters = line.partition(":")
        if interface.strip() == "lo":
            return int(counters.split()[8])  # 8 receive columns, then transmit bytes
    raise RuntimeError(f"no 'lo' line in {proc_net_dev}")
