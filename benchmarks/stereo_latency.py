"""Forward latency and peak memory of every registered stereo model, side by side, at one input size.

For each model in ``lightning_hpml.modules.list_models(<glob>, family="stereo")`` whose ``forward`` takes
``(left, right)``, the script builds it, runs ``--warmup`` untimed forwards and then ``--repeats`` timed ones under
``torch.inference_mode()`` on a batch of random images (default 576 x 960, batch 1, FADNet's evaluation size),
and reports the median and min/max time, frames per second and peak memory. Models whose forward has another
signature are skipped with the reason printed (and recorded in the JSON).

Modes (each model's time is also given as a ratio to its own ``fp32`` run in the same process):

Each model is measured in its own fresh interpreter (``--no-isolate`` measures all in one process).

- CPU: ``fp32``. Peak memory is the peak resident set size of the process during the forwards (warm-up and
  timed) minus the resident size before them (weights already loaded), read from ``/proc/self/status`` ``VmHWM`` after resetting it
  through ``/proc/self/clear_refs`` (Linux >= 4.0); elsewhere the ``ru_maxrss`` increase (0 when an earlier peak
  was higher, marked ``rss_method: ru_maxrss``).
- CUDA (when ``--device cuda`` or ``auto`` finds a GPU): ``fp32``, ``bf16`` (``torch.autocast``) and
  ``channels_last`` (fp32 weights and inputs in channels-last memory format). Timing synchronises the device;
  peak memory is ``torch.cuda.max_memory_allocated`` during the forwards minus the allocation before them.

Absolute times only mean something on the machine that produced them (recorded in the JSON: CPU model, cores,
threads, torch and CUDA versions, GPU name); CPU numbers on a shared machine are indicative only.

Usage::

    python benchmarks/stereo_latency.py --models 'fadnet*' --repeats 3 --device cpu
    python benchmarks/stereo_latency.py --device cuda --repeats 50     # fp32 / bf16 / channels_last
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from typing_extensions import Self

from lightning_hpml.modules import create_model, list_models

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CPU_MODES = ("fp32",)
CUDA_MODES = ("fp32", "bf16", "channels_last")


# ------------------------------------------------------------------------------------------------ machine facts
def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux) or :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


# ------------------------------------------------------------------------------------------------------ memory
_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so that the resident
    size at the start of a measurement holds live data only and not what an earlier model freed (which the next
    forward could reuse without raising the RSS, hiding its peak)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measurement may under-report after an earlier model
        pass


class CpuPeakMemory:
    """Peak resident memory above the level at entry, in MiB (``value``), and how it was measured (``method``)."""

    def __enter__(self) -> Self:
        _release_freed_memory()
        self.method = "VmHWM" if _reset_peak_rss() and _status_kib("VmHWM") is not None else "ru_maxrss"
        if self.method == "VmHWM":
            self._start = _status_kib("VmRSS") or 0
        else:
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return self

    def __exit__(self, *exc: object) -> None:
        end = _status_kib("VmHWM") if self.method == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.value = max(0, (end or 0) - self._start) / 1024.0


class CudaPeakMemory:
    """Peak CUDA allocation above the level at entry, in MiB."""

    method = "max_memory_allocated"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Self:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._start = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.cuda.synchronize(self.device)
        self.value = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20


# ------------------------------------------------------------------------------------------------------- models
def stereo_signature_problem(model: nn.Module) -> str | None:
    """``None`` if ``model.forward`` takes exactly the required arguments ``(left, right)``, else the reason."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError) as err:
        return f"forward signature unreadable: {err}"
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required != ["left", "right"]:
        return f"forward requires ({', '.join(required)}), not (left, right)"
    return None


def padded_size(height: int, width: int, divisor: int) -> tuple[int, int]:
    """Round ``height`` and ``width`` up to multiples of ``divisor`` (what StereoModule's eval padding feeds)."""
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(
    model: nn.Module,
    left: torch.Tensor,
    right: torch.Tensor,
    *,
    warmup: int,
    repeats: int,
    autocast_dtype: torch.dtype | None,
) -> tuple[list[float], Any]:
    """Run ``warmup`` untimed and ``repeats`` timed forwards; returns the times (s) and the memory probe.

    The memory probe spans the warm-up too, so memory that the allocator keeps after the first forward (glibc
    arenas on CPU) is counted once rather than hidden in the starting level.
    """
    device = left.device
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    probe = CudaPeakMemory(device) if device.type == "cuda" else CpuPeakMemory()
    times = []
    with torch.inference_mode(), autocast, probe:
        for _ in range(warmup):
            model(left, right)
        _sync(device)
        for _ in range(repeats):
            start = time.perf_counter()
            model(left, right)
            _sync(device)
            times.append(time.perf_counter() - start)
    return times, probe


def benchmark_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Measure one registered model in every mode of ``device``; a skipped or failed model gets a reason."""
    record: dict[str, Any] = {"model": name}
    try:
        model = create_model(name)
    except Exception as err:  # noqa: BLE001 - a colleague's model may need arguments: report, do not abort the sweep
        record["skipped"] = f"create_model failed: {type(err).__name__}: {err}"
        return record
    problem = stereo_signature_problem(model)
    if problem is not None:
        record["skipped"] = problem
        return record
    divisor = int(getattr(model, "size_divisor", 1))
    height, width = padded_size(args.height, args.width, divisor)
    record.update(
        params=sum(p.numel() for p in model.parameters()),
        input_size=[args.batch_size, 3, height, width],
        size_divisor=divisor,
        modes={},
    )
    model.eval().to(device)
    generator = torch.Generator().manual_seed(0)
    left = torch.rand(args.batch_size, 3, height, width, generator=generator).to(device)
    right = torch.rand(args.batch_size, 3, height, width, generator=generator).to(device)
    modes = args.modes or (CUDA_MODES if device.type == "cuda" else CPU_MODES)
    for mode in modes:
        channels_last = mode == "channels_last"
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=memory_format)
        inputs = [t.contiguous(memory_format=memory_format) for t in (left, right)]
        try:
            times, probe = time_forward(
                model,
                *inputs,
                warmup=args.warmup,
                repeats=args.repeats,
                autocast_dtype=torch.bfloat16 if mode == "bf16" else None,
            )
        except Exception as err:  # noqa: BLE001 - e.g. out of memory, or an op without bf16 kernels on this device
            record["modes"][mode] = {"error": f"{type(err).__name__}: {err}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        median = statistics.median(times)
        record["modes"][mode] = {
            "median_ms": median * 1e3,
            "min_ms": min(times) * 1e3,
            "max_ms": max(times) * 1e3,
            "fps": args.batch_size / median,
            "peak_mib": probe.value,
            "memory_method": probe.method,
            "times_ms": [t * 1e3 for t in times],
        }
    model.to(memory_format=torch.contiguous_format)
    base = record["modes"].get("fp32", {}).get("median_ms")
    for result in record["modes"].values():
        if base and "median_ms" in result:
            result["speedup_vs_fp32"] = base / result["median_ms"]
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return record


# ------------------------------------------------------------------------------------------------------ output
def print_table(records: list[dict[str, Any]], machine: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the results as a rich table (plain text when rich is missing)."""
    title = f"Stereo forward latency, batch {args.batch_size}, {args.height}x{args.width}"
    caption = (
        f"{machine['device']}: {machine.get('gpu_name') or machine['cpu_model']}, {machine['torch_threads']} "
        f"torch threads, torch {machine['torch']}; warm-up {args.warmup}, median of {args.repeats}"
    )
    header = ["model", "params", "mode", "median ms", "min ms", "max ms", "FPS", "vs fp32", "peak MiB"]
    rows = []
    for record in records:
        if "skipped" in record:
            rows.append([record["model"], "-", "skipped", record["skipped"], "", "", "", "", ""])
            continue
        for mode, r in record["modes"].items():
            if "error" in r:
                rows.append([record["model"], f"{record['params']:,}", mode, "error: " + r["error"][:60], *[""] * 5])
                continue
            rows.append(
                [
                    record["model"],
                    f"{record['params']:,}",
                    mode,
                    f"{r['median_ms']:.1f}",
                    f"{r['min_ms']:.1f}",
                    f"{r['max_ms']:.1f}",
                    f"{r['fps']:.2f}",
                    f"{r.get('speedup_vs_fp32', float('nan')):.2f}x",
                    f"{r['peak_mib']:.0f}",
                ]
            )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(caption)
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(row))
        return
    table = Table(title=title, caption=caption)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i in (0, 2) else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


def run_isolated(name: str, argv: list[str] | None) -> dict[str, Any]:
    """Measure one model in a fresh interpreter (same arguments plus ``--worker``), so that memory an earlier
    model left in the allocator, and one-time library set-up, cannot leak into its numbers."""
    forwarded = list(sys.argv[1:] if argv is None else argv)
    command = [sys.executable, str(Path(__file__).resolve()), *forwarded, "--worker", name]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"model": name, "skipped": f"worker process failed with exit code {done.returncode}"}
    return json.loads(lines[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="*", help="shell-style glob over registered model names (default: *)")
    parser.add_argument("--height", type=int, default=576, help="input height (rounded up to the model's divisor)")
    parser.add_argument("--width", type=int, default=960, help="input width (rounded up to the model's divisor)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per model and mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards before timing")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=CUDA_MODES,
        help=f"modes to run (default: {' '.join(CPU_MODES)} on CPU, {' '.join(CUDA_MODES)} on CUDA)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="measure all models in this process (faster start; CPU peak memory then depends on model order)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args(argv)
    for name in ("height", "width", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> Path | None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    names = list_models(args.models, family="stereo")
    if not names:
        raise SystemExit(f"--models {args.models!r} matches no registered model; registered: {list_models()}")
    if args.worker is not None:
        print(json.dumps(benchmark_model(args.worker, args, device)))
        return None
    machine = machine_description(device)
    records = []
    for name in names:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        record = run_isolated(name, argv) if args.isolate else benchmark_model(name, args, device)
        if "skipped" in record:
            print(f"  skipped {name}: {record['skipped']}", file=sys.stderr, flush=True)
        records.append(record)
    print_table(records, machine, args)
    # A sibling script's module; benchmarks/ is on sys.path when run.
    from _report import reserve_result_path, source_revision

    output = args.output or reserve_result_path(RESULTS_DIR, f"stereo_latency-{device.type}")
    output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "stereo_latency",
        "created_utc": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        "command": [sys.executable, *sys.argv] if argv is None else ["stereo_latency.py", *argv],
        "source_revision": source_revision(),
        "settings": {
            "models": args.models,
            "height": args.height,
            "width": args.width,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
        "machine": machine,
        "results": records,
    }
    output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {output}", file=sys.stderr)
    return output


if __name__ == "__main__":
    main()
