"""Iteration time of LAGS-SGD against dense DDP, PowerSGD and global top-k over an emulated slow network.

Gradient sparsification only pays off where the network, not the compute, limits a step, so this benchmark runs
the same training step at several link rates on one machine: each rate gets its own Linux network namespace
whose loopback is capped by a token-bucket filter (``tc qdisc add dev lo root tbf rate R``, see ``_netns.py``),
and ``--world-size`` Gloo processes (``torch.multiprocessing``, one torch thread each) talk over that loopback.
``unthrottled`` is a namespace without a qdisc. Inside one process group every model is trained by every method,
side by side, from the same seed, on a fixed random batch per rank, with SGD (lr 0.01, momentum 0.9):

- ``compute_only``: local forward, backward and step, no communication (the lower bound);
- ``dense_ddp``: ``DistributedDataParallel`` with default settings (bucketed allreduce overlapped with backward);
- ``powersgd``: DDP with torch's ``powerSGD_hook`` (rank ``--powersgd-rank``, compression from iteration 2);
- ``topk_global``: after backward, exact top-k with error feedback over the whole flattened gradient at
  ``--density``, one allgather of packed values and int32 indices (no overlap with backward);
- ``lags_fixed``: :class:`~lightning_hpml.strategies.lags.LayerwiseSparseReducer` at ``--density`` everywhere,
  each group's exchange started from its backward hook;
- ``lags_adaptive``: the same with the adaptive per-group density plan (link cost measured at start-up).

``--density-min``, ``--density-max``, ``--lags-density-warmup-steps``, ``--lags-dense-below``,
``--lags-dense-group-threshold``, ``--lags-dense-below-bits`` and ``--lags-sparse-values`` set the LAGS methods'
arguments of the same names, so the configuration recommended by ``lags_convergence.py`` runs here unchanged; a
density warm-up runs untimed (its wall time is ``warmup_s`` in the JSON), and the timed steps use the planned
densities.

Each method first runs enough untimed steps to be in its steady state (DDP's bucket rebuild, PowerSGD's
compressed phase, the LAGS profile and plan), then ``--steps`` timed iterations between two barriers, fewer
when the last warm-up step says they would exceed ``--time-budget-s`` (the dense runs at 10 Mbit/s take
seconds per step). Rank 0 reads the namespace's ``lo`` transmit counter (``/proc/net/dev``) around the timed
loop; divided by iterations and processes that is the bytes each rank put on the wire per iteration, TCP/IP
headers and barriers included. The LAGS reducer's own estimate (``bytes_sent``) is reported next to it. ``CPU ms``
is rank 0's process CPU time (all threads) per iteration: with one core per rank, what a method adds there comes
out of the compute, wherever its communication hides. The JSON also has the main thread's share and the minor page
faults per iteration. The methods take turns in ``--rounds`` interleaved rounds; each LAGS method is compared with
each baseline round by round (``paired`` in the JSON, a list under the table: mean difference per iteration, 95 %
Student-t interval over the rounds, rounds in which LAGS was faster), since the machine's speed drifts between rounds
by more than some of the differences.

glibc's allocator hands large freed blocks back to the kernel, so every step faults the next step's tensors in
again: on this project's VM 4,300-6,900 minor faults per CNN step here (more for LAGS than for the others), 13-22
thousand and 40-70 ms of kernel time in a one-model script, varying from run to run by more than the differences
being measured. The ranks therefore run with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296`` (freed memory stays
in the process; PyTorch's CPU tuning guide recommends a caching allocator for the same reason), under 500 faults per
step; ``--no-keep-freed-memory`` runs with glibc's defaults.

Creating namespaces needs root; ``--no-netns`` runs only ``unthrottled`` on the host loopback (its counter then
includes any other local traffic). Absolute times only mean something on the machine that produced them.

Usage::

    sudo python benchmarks/lags_bandwidth.py                                  # 10, 100, 1000 Mbit/s, unthrottled
    sudo python benchmarks/lags_bandwidth.py --rates 100 --models cnn --steps 10
    python benchmarks/lags_bandwidth.py --no-netns --quick                    # smoke test without root
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _netns import check_netns_available, lo_tx_bytes, throttled_namespace
from _report import markdown_table, reserve_result_path, write_results
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from lightning_hpml.strategies.lags import LayerwiseSparseReducer, num_selected, select_topk_with_residual
from lightning_hpml.strategies.lags.cost_model import all_gather_single
from lightning_hpml.strategies.lags.topk import add_gathered_sparse, pack_sparse

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: glibc malloc settings that keep freed blocks in the process instead of unmapping them (see the module docstring).
KEEP_FREED_MEMORY = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
METHODS = ("compute_only", "dense_ddp", "powersgd", "topk_global", "lags_fixed", "lags_adaptive")
MODELS = ("cnn", "transformer")
LR, MOMENTUM = 0.01, 0.9
POWERSGD_START_ITER = 2


# ------------------------------------------------------------------------------------------------------- models
class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCNN(nn.Module):
    """A CIFAR-style ResNet with one basic block per stage (widths w, 2w, 4w, 8w); w=48 gives 2.8 M parameters,
    most of them in the last stage, which backward reaches first: the layout that layer-wise pipelining targets."""

    def __init__(self, width: int = 48, classes: int = 10) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, cin = [], width
        for i, cout in enumerate(widths):
            stages.append(BasicBlock(cin, cout, 1 if i == 0 else 2))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.stages(self.stem(x)).mean(dim=(2, 3)))


class TinyLM(nn.Module):
    """A pre-norm causal transformer language model (``nn.TransformerEncoder``) with learned positions."""

    def __init__(self, vocab: int, d_model: int, layers: int, heads: int, seq_len: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(seq_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        hidden = self.encoder(self.embed(tokens) + self.pos, mask=self.mask, is_causal=True)
        return self.head(self.norm(hidden))


def build_model(name: str, quick: bool, rank: int, seed: int) -> tuple[nn.Module, Tensor, Tensor]:
    """The model (same weights on every rank and for every method) and this rank's fixed batch."""
    torch.manual_seed(seed)
    data = torch.Generator().manual_seed(seed + 1 + rank)
    if name == "cnn":
        model = ResNetCNN(width=8 if quick else 48)
        batch = 8 if quick else 32
        return model, torch.randn(batch, 3, 32, 32, generator=data), torch.randint(0, 10, (batch,), generator=data)
    vocab, d_model, seq_len, batch = (128, 32, 16, 4) if quick else (2000, 192, 64, 16)
    model = TinyLM(vocab, d_model, layers=1 if quick else 3, heads=4, seq_len=seq_len)
    tokens = torch.randint(0, vocab, (batch, seq_len + 1), generator=data)
    return model, tokens[:, :-1], tokens[:, 1:]


def loss_fn(output: Tensor, target: Tensor) -> Tensor:
    """Cross entropy for both models (the LM's logits and targets are flattened over positions)."""
    return nn.functional.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


# ------------------------------------------------------------------------------------------------------ methods
class Method:
    """One training step of ``compute_only``; subclasses wrap the model or exchange gradients before the step."""

    #: Untimed steps before the method is in its steady state.
    warmup_steps = 2

    def __init__(self, model: nn.Module, args: argparse.Namespace) -> None:
        self.model = model
        self.module = self.wrap(model, args)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def wrap(self, model: nn.Module, args: argparse.Namespace) -> nn.Module:
        return model

    def step(self, inputs: Tensor, target: Tensor) -> dict[str, float] | None:
        self.optimizer.zero_grad(set_to_none=True)
        loss_fn(self.module(inputs), target).backward()
        stats = self.exchange()
        self.optimizer.step()
        return stats

    def exchange(self) -> dict[str, float] | None:
        return None

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class DenseDDP(Method):
    """``DistributedDataParallel`` as it comes: the baseline every sparse method has to beat."""

    def wrap(self, model: nn.Module, args: argparse.Namespace) -> nn.Module:
        return DistributedDataParallel(model)


class PowerSGD(Method):
    """DDP with torch's PowerSGD hook, in one bucket.

    The hook issues its P and Q allreduces from future callbacks, which Gloo runs on its worker threads; with
    several buckets in flight the ranks can then issue collectives in different orders and Gloo aborts with
    "Received data size doesn't match expected size" (4 of 12 CNN runs here; torch tests PowerSGD on
    NCCL only, pytorch/pytorch#58467). One bucket (``bucket_cap_mb`` above the model size) keeps the order fixed,
    at the price of starting compression only after backward.
    """

    # Iterations before POWERSGD_START_ITER are plain allreduces; two more let the compressed phase settle.
    warmup_steps = POWERSGD_START_ITER + 2

    def wrap(self, model: nn.Module, args: argparse.Namespace) -> nn.Module:
        model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        ddp = DistributedDataParallel(model, bucket_cap_mb=math.ceil(model_mb) + 1)
        self.state = PowerSGDState(
            process_group=None, matrix_approximation_rank=args.powersgd_rank, start_powerSGD_iter=POWERSGD_START_ITER
        )
        ddp.register_comm_hook(self.state, powerSGD_hook)
        return ddp


class TopKGlobal(Method):
    """Non-pipelined global top-k: the same selection code and wire format as the LAGS reducer, one message."""

    def __init__(self, model: nn.Module, args: argparse.Namespace) -> None:
        super().__init__(model, args)
        self.params = [p for p in model.parameters() if p.requires_grad]
        numel = sum(p.numel() for p in self.params)
        self.k = num_selected(numel, args.density)
        self.residual = torch.zeros(numel)
        self.generator = torch.Generator().manual_seed(0)
        self.world_size = dist.get_world_size()

    def exchange(self) -> dict[str, float]:
        accumulated = torch.cat([p.grad.reshape(-1) for p in self.params]).float().add_(self.residual)
        values, indices = select_topk_with_residual(accumulated, self.residual, self.k, self.generator)
        message = pack_sparse(values, indices)
        gathered = message.new_empty(self.world_size * message.numel())
        all_gather_single(gathered, message)
        averaged = add_gathered_sparse(torch.zeros_like(accumulated), gathered, self.world_size)
        averaged.div_(self.world_size)
        offset = 0
        for p in self.params:
            p.grad.copy_(averaged[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()
        return {
            "bytes_sent": float((self.world_size - 1) * message.numel() * 4),
            "density": self.k / accumulated.numel(),
        }


class LagsFixed(Method):
    """The LAGS reducer at ``--density`` in every group: layer-wise pipelining without the adaptive plan."""

    adaptive = False

    def __init__(self, model: nn.Module, args: argparse.Namespace) -> None:
        super().__init__(model, args)
        self.reducer = LayerwiseSparseReducer(
            model,
            density=args.density,
            adaptive=self.adaptive,
            density_min=args.density_min,
            density_max=args.density_max,
            group_threshold=args.group_threshold,
            density_warmup_steps=args.lags_density_warmup_steps,
            dense_below=args.lags_dense_below,
            dense_group_threshold=args.lags_dense_group_threshold,
            dense_below_bits=args.lags_dense_below_bits,
            sparse_values=args.lags_sparse_values,
            warmup_steps=1,
            profile_steps=args.lags_profile_steps,
        )
        # Steady state: the first step (group order check), the adaptive profile and plan, then two planned steps;
        # with a density warm-up (DGC), also every step of it, so the timed steps send at the planned densities.
        self.warmup_steps = max(1 + args.lags_profile_steps + 2, args.lags_density_warmup_steps + 1)

    def exchange(self) -> dict[str, float]:
        return self.reducer.finish().to_dict()

    def info(self) -> dict[str, Any]:
        reducer = self.reducer
        numels = [group.numel for group in reducer.groups]
        return {
            "groups": len(numels),
            "plan_densities": reducer.densities,
            "plan_mean_density": sum(d * n for d, n in zip(reducer.densities, numels, strict=True)) / sum(numels),
            "plan_dense_groups": sum(d >= 1.0 for d in reducer.densities),
            "link_cost": reducer.link_cost.to_dict() if reducer.link_cost is not None else None,
            "profiled_times_s": reducer.profiled_times,
        }

    def close(self) -> None:
        self.reducer.remove_hooks()


class LagsAdaptive(LagsFixed):
    """The LAGS reducer with the adaptive plan (link cost measured in its constructor)."""

    adaptive = True


METHOD_CLASSES: dict[str, type[Method]] = {
    "compute_only": Method,
    "dense_ddp": DenseDDP,
    "powersgd": PowerSGD,
    "topk_global": TopKGlobal,
    "lags_fixed": LagsFixed,
    "lags_adaptive": LagsAdaptive,
}


# ------------------------------------------------------------------------------------------------- measurement
def mean_stats(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.fmean(s[key] for s in samples) for key in samples[0]} if samples else {}


class Timed:
    """One method on its own copy of the model, warmed up, with what its timed chunks measured so far."""

    def __init__(self, model_name: str, method_name: str, args: argparse.Namespace, rank: int) -> None:
        self.name = method_name
        model, self.inputs, self.target = build_model(model_name, args.quick, rank, args.seed)
        self.params = sum(p.numel() for p in model.parameters())
        self.method = METHOD_CLASSES[method_name](model, args)
        warmup_started = time.perf_counter()
        for _ in range(self.method.warmup_steps):
            started = time.perf_counter()
            self.method.step(self.inputs, self.target)
            last_step_s = time.perf_counter() - started
        self.warmup_s = time.perf_counter() - warmup_started
        # Every rank must run the same number of steps: size the loop from the slowest rank's last warm-up step.
        slowest = torch.tensor([last_step_s], dtype=torch.float64)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        steps = max(min(args.steps, args.min_steps), min(args.steps, math.floor(args.time_budget_s / float(slowest))))
        self.steps_per_round = math.ceil(steps / args.rounds)
        self.elapsed_s, self.cpu_s, self.tx_bytes, self.times, self.stats = 0.0, 0.0, 0, [], []
        self.round_means: list[float] = []  # rank 0's wall time per iteration in each round
        self.main_cpu_s, self.minor_faults = 0.0, 0

    def run_chunk(self) -> None:
        """``steps_per_round`` iterations between barriers; rank 0's wall time and ``lo`` bytes are accumulated."""
        times = torch.zeros(self.steps_per_round, dtype=torch.float64)
        dist.barrier()
        tx_before = lo_tx_bytes()
        started, cpu_started = time.perf_counter(), time.process_time()
        main_started, faults_before = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(self.steps_per_round):
            step_started = time.perf_counter()
            step_stats = self.method.step(self.inputs, self.target)
            times[i] = time.perf_counter() - step_started
            if step_stats is not None:
                self.stats.append(step_stats)
        self.cpu_s += time.process_time() - cpu_started
        self.main_cpu_s += time.thread_time() - main_started
        self.minor_faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
        dist.barrier()
        chunk_s = time.perf_counter() - started
        self.elapsed_s += chunk_s
        self.round_means.append(chunk_s / self.steps_per_round)
        self.tx_bytes += lo_tx_bytes() - tx_before
        dist.all_reduce(times, op=dist.ReduceOp.MAX)  # an iteration lasts as long as its slowest rank
        self.times += times.tolist()

    def record(self, model_name: str) -> dict[str, Any]:
        steps = len(self.times)
        return {
            "model": model_name,
            "method": self.name,
            "params": self.params,
            "warmup_steps": self.method.warmup_steps,
            "warmup_s": self.warmup_s,  # this rank's untimed warm-up (LAGS: includes any density warm-up)
            "steps": steps,
            "iter_s_mean": self.elapsed_s / steps,
            "iter_s_median": statistics.median(self.times),
            "iter_s_min": min(self.times),
            "iter_s_all": self.times,
            "iter_s_rounds": self.round_means,
            # CPU time of this rank's process (every thread: compute, Gloo, ...) per iteration: on a machine with as
            # many cores as ranks, whatever a method adds here comes out of the compute.
            "cpu_s_per_iter": self.cpu_s / steps,
            "main_thread_cpu_s_per_iter": self.main_cpu_s / steps,  # the training loop's thread: hooks included
            "minor_faults_per_iter": self.minor_faults / steps,
            "wire_bytes_per_rank_per_iter": self.tx_bytes / steps / dist.get_world_size(),
            "stats": mean_stats(self.stats),
            **self.method.info(),
        }


def measure_model(model_name: str, args: argparse.Namespace, rank: int) -> list[dict[str, Any]]:
    """Warm every method up, then time them in ``--rounds`` interleaved rounds, so that load from other processes
    on the machine (and drifting clock speeds) spreads over all methods instead of skewing whichever ran then."""
    timed = [Timed(model_name, name, args, rank) for name in args.methods]
    for _ in range(args.rounds):
        for entry in timed:
            entry.run_chunk()
    records = [entry.record(model_name) for entry in timed]
    for entry in timed:
        entry.method.close()
    return records


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, args: argparse.Namespace, port: int, output: Path) -> None:
    """One Gloo rank: every model with every method; rank 0 writes the records as JSON to ``output``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.world_size, timeout=timedelta(minutes=15))
    try:
        records = []
        for model_name in args.models:
            for record in measure_model(model_name, args, rank):
                records.append(record)
                if rank == 0:
                    print(
                        f"  [{args.inner_rate}] {model_name:<11} {record['method']:<13} {record['iter_s_mean'] * 1e3:9.1f}"
                        f" ms/iter over {record['steps']} steps, {record['wire_bytes_per_rank_per_iter'] / 1e6:8.3f} MB"
                        "/rank/iter on the wire",
                        file=sys.stderr,
                        flush=True,
                    )
                    if record.get("link_cost") is not None:
                        cost = record["link_cost"]
                        print(
                            f"      plan: mean density {record['plan_mean_density']:.4f}, "
                            f"{record['plan_dense_groups']}/{record['groups']} groups dense; link cost: allgather "
                            f"{cost['alpha_allgather'] * 1e3:.3f} ms + {8e-6 / max(cost['beta_allgather'], 1e-30):.0f}"
                            " Mbit/s",
                            file=sys.stderr,
                            flush=True,
                        )
        if rank == 0:
            output.write_text(json.dumps(records), encoding="utf-8")
    finally:
        dist.destroy_process_group()


def run_inner(args: argparse.Namespace) -> None:
    """Inside the namespace: spawn the ranks (ports are free per namespace, so each rate picks its own)."""
    mp.spawn(worker, args=(args, free_port(), args.inner_output), nprocs=args.world_size)


# ---------------------------------------------------------------------------------------------- orchestration
def tbf_settings(rate_mbit: float, mtu: int) -> dict[str, int]:
    """Burst: 1 ms at line rate but at least two packets (a tbf drops larger ones); queue: 100 ms, at least 1 MiB."""
    bytes_per_s = rate_mbit * 1e6 / 8
    return {"burst_bytes": max(2 * mtu, int(bytes_per_s * 1e-3)), "limit_bytes": max(1 << 20, int(bytes_per_s * 0.1))}


def run_ranks(command: list[str], env: dict[str, str]) -> None:
    """Run the rank launcher in its own session and kill that whole session on any exit (Ctrl-C, SIGTERM, error),
    so that no rank outlives the namespace it was measuring."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        if process.wait() != 0:
            raise subprocess.CalledProcessError(process.returncode, command)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_rate(rate: str, args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Measure every model and method at one rate in a fresh namespace (or on the host with ``--no-netns``)."""
    rate_mbit = None if rate == "unthrottled" else float(rate)
    env = {**os.environ, "TORCH_CPP_LOG_LEVEL": os.environ.get("TORCH_CPP_LOG_LEVEL", "ERROR")}  # c10d hostname noise
    if args.keep_freed_memory:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), KEEP_FREED_MEMORY]))
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "records.json"
        inner = [
            sys.executable,
            str(Path(__file__).resolve()),
            *argv,
            "--inner-rate",
            rate,
            "--inner-output",
            str(output),
        ]
        tbf = tbf_settings(rate_mbit, args.mtu) if rate_mbit is not None else None
        started, load_before = time.perf_counter(), load_average()
        if args.netns:
            with throttled_namespace(rate_mbit, mtu=args.mtu, **(tbf or {"burst_bytes": 0, "limit_bytes": 0})) as name:
                run_ranks(["ip", "netns", "exec", name, *inner], env)
        else:
            run_ranks(inner, env)
        records = json.loads(output.read_text(encoding="utf-8"))
    add_ratios(records)
    return {
        "rate": rate,
        "rate_mbit": rate_mbit,
        "network": "netns loopback" if args.netns else "host loopback",
        "tbf": tbf,
        "wall_s": time.perf_counter() - started,
        "load_average_before_after": [load_before, load_average()],
        "records": records,
        "paired": paired_differences(records),
    }


def load_average() -> float | None:
    """1-minute load average: above the core count, other processes competed with the ranks for the CPU."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Speed-up over ``dense_ddp`` and slowdown over ``compute_only`` of the same model (when both were run)."""
    by_key = {(r["model"], r["method"]): r for r in records}
    for record in records:
        dense = by_key.get((record["model"], "dense_ddp"))
        compute = by_key.get((record["model"], "compute_only"))
        record["speedup_vs_dense_ddp"] = dense["iter_s_mean"] / record["iter_s_mean"] if dense else None
        record["slowdown_vs_compute_only"] = record["iter_s_mean"] / compute["iter_s_mean"] if compute else None


#: The LAGS methods and the baselines they are compared with round by round.
PAIRED = [
    (lags, other) for lags in ("lags_fixed", "lags_adaptive") for other in ("powersgd", "topk_global", "dense_ddp")
]


def paired_differences(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """LAGS minus each baseline, per iteration, from the rounds in which both ran back to back: the machine's speed
    drifts by more than some of the differences over a run (this VM: 10 %), and pairing by round cancels the drift.
    The 95 % interval is Student's t over the rounds (none with a single round)."""
    from scipy import stats

    by_key = {(r["model"], r["method"]): r for r in records}
    compared = []
    for model in dict.fromkeys(r["model"] for r in records):
        for lags, other in PAIRED:
            if (model, lags) not in by_key or (model, other) not in by_key:
                continue
            lags_rounds, other_rounds = by_key[model, lags]["iter_s_rounds"], by_key[model, other]["iter_s_rounds"]
            diffs = [a - b for a, b in zip(lags_rounds, other_rounds, strict=True)]
            mean, interval = statistics.fmean(diffs), None
            if len(diffs) > 1:
                half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
                interval = [mean - half, mean + half]
            compared.append(
                {
                    "model": model,
                    "method": lags,
                    "baseline": other,
                    "rounds": len(diffs),
                    "diff_s_mean": mean,
                    "diff_s_ci95": interval,
                    "faster_in_rounds": sum(d < 0 for d in diffs),
                }
            )
    return compared


def paired_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for result in results:
        for c in result["paired"]:
            interval = c["diff_s_ci95"]
            spread = "" if interval is None else f" (95 % CI {interval[0] * 1e3:+.1f} to {interval[1] * 1e3:+.1f})"
            lines.append(
                f"{rate_label(result['rate'])}, {c['model']}: {c['method']} - {c['baseline']} = "
                f"{c['diff_s_mean'] * 1e3:+.1f} ms/iter{spread}, faster in {c['faster_in_rounds']}/{c['rounds']} rounds"
            )
    return lines


# ------------------------------------------------------------------------------------------------------ output
def rate_label(rate: str) -> str:
    return rate if rate == "unthrottled" else f"{rate} Mbit/s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["rate", "model", "method", "mean ms", "median ms", "CPU ms", "steps", "wire MB/rank/iter", "density",
              "vs dense_ddp", "vs compute_only"]  # fmt: skip
    rows = []
    for result in results:
        for r in result["records"]:
            density = r.get("plan_mean_density", r["stats"].get("density"))
            rows.append(
                [
                    rate_label(result["rate"]),
                    r["model"],
                    r["method"],
                    f"{r['iter_s_mean'] * 1e3:.1f}",
                    f"{r['iter_s_median'] * 1e3:.1f}",
                    f"{r['cpu_s_per_iter'] * 1e3:.1f}",
                    str(r["steps"]),
                    f"{r['wire_bytes_per_rank_per_iter'] / 1e6:.3f}",
                    "-" if density is None else f"{density:.4f}",
                    _ratio(r["speedup_vs_dense_ddp"]),
                    _ratio(r["slowdown_vs_compute_only"]),
                ]
            )
    return header, rows


def print_table(header: list[str], rows: list[list[str]], caption: str) -> None:
    """A rich table (plain text when rich is missing)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(caption)
        print(markdown_table(header, rows))
        return
    table = Table(title="LAGS vs dense / PowerSGD / top-k over a rate-limited loopback", caption=caption)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i < 3 else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=180).print(table)


def describe_machine(args: argparse.Namespace) -> dict[str, Any]:
    from stereo_latency import machine_description  # lazy: imports every stereo model, only the parent needs it

    return {**machine_description(torch.device("cpu")), "world_size": args.world_size, "threads_per_rank": 1}


# --------------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,100,1000,unthrottled", help="Mbit/s values and/or 'unthrottled'")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--world-size", type=int, default=2, help="Gloo processes (default 2: one per core here)")
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per method (at most)")
    parser.add_argument("--min-steps", type=int, default=3, help="timed iterations per method (at least)")
    parser.add_argument(
        "--time-budget-s", type=float, default=45.0, help="fewer timed steps (not below --min-steps) beyond this"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds over the methods")
    parser.add_argument("--density", type=float, default=0.01, help="top-k / lags_fixed density")
    parser.add_argument("--density-min", type=float, default=0.001, help="lags_adaptive lower density clamp")
    parser.add_argument("--density-max", type=float, default=1.0, help="lags_adaptive upper sparse density clamp")
    parser.add_argument("--group-threshold", type=int, default=8192, help="LAGS group size threshold (elements)")
    parser.add_argument("--lags-profile-steps", type=int, default=5, help="LAGS backward-profiling steps")
    parser.add_argument(
        "--lags-density-warmup-steps",
        type=int,
        default=0,
        help="LAGS dense warm-up (DGC): densities decay from 1 over this many steps, run untimed before timing",
    )
    parser.add_argument(
        "--lags-dense-below", type=int, default=0, help="LAGS: tensors with fewer elements always go dense"
    )
    parser.add_argument(
        "--lags-dense-group-threshold",
        type=int,
        default=None,
        help="LAGS: close a group of those small tensors at this many elements (default: --group-threshold)",
    )
    parser.add_argument(
        "--lags-dense-below-bits", type=int, default=32, choices=(32, 8, 1), help="LAGS: bits per small-tensor entry"
    )
    parser.add_argument(
        "--lags-sparse-values", default="float32", choices=("float32", "bfloat16"), help="LAGS: value dtype on the wire"
    )
    parser.add_argument("--powersgd-rank", type=int, default=1, help="PowerSGD matrix approximation rank")
    parser.add_argument("--mtu", type=int, default=9000, help="loopback MTU inside the namespaces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-keep-freed-memory",
        dest="keep_freed_memory",
        action="store_false",
        help="run the ranks with glibc's default allocator settings (freed blocks go back to the kernel)",
    )
    parser.add_argument("--no-netns", dest="netns", action="store_false", help="host loopback, unthrottled only")
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 timed steps, 2 profile steps (tests)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="where the JSON and .md go")
    parser.add_argument("--inner-rate", default=None, help=argparse.SUPPRESS)  # internal: run the ranks
    parser.add_argument("--inner-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.min_steps, args.lags_profile_steps = min(args.steps, 2), min(args.min_steps, 2), 2
    args.rates = [r.strip() for r in args.rates.split(",") if r.strip()]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for rate in args.rates:
        if rate != "unthrottled" and not _positive_number(rate):
            parser.error(f"--rates: {rate!r} is neither a positive number of Mbit/s nor 'unthrottled'")
    for name, chosen, known in (("models", args.models, MODELS), ("methods", args.methods, METHODS)):
        unknown = sorted(set(chosen) - set(known))
        if unknown or not chosen:
            parser.error(f"--{name}: unknown {unknown or 'empty'}; choose from {','.join(known)}")
    if not args.netns and args.rates != ["unthrottled"]:
        parser.error("--no-netns can only measure --rates unthrottled (throttling needs a namespace)")
    if args.world_size < 2 or min(args.steps, args.min_steps, args.rounds) < 1:
        parser.error("need --world-size >= 2 and --steps, --min-steps, --rounds >= 1")
    return args


def _positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> Path | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.inner_rate is not None:
        run_inner(args)
        return None
    if args.netns and (problem := check_netns_available()) is not None:
        raise SystemExit(f"{problem}; run as root, or pass --no-netns --rates unthrottled (host loopback)")
    # SIGTERM unwinds like Ctrl-C, so the namespaces are deleted either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    results = []
    for rate in args.rates:
        print(f"rate {rate_label(rate)} ...", file=sys.stderr, flush=True)
        results.append(run_rate(rate, args, argv))
    machine = describe_machine(args)
    header, rows = table_rows(results)
    caption = (
        f"{machine['cpu_model']}, {args.world_size} Gloo ranks x 1 thread, torch {machine['torch']}; "
        f"density {args.density}, PowerSGD rank {args.powersgd_rank}; LAGS adaptive density in "
        f"[{args.density_min}, {args.density_max}], density warm-up {args.lags_density_warmup_steps} steps (untimed), dense below "
        f"{args.lags_dense_below} elements at {args.lags_dense_below_bits} bits in groups of "
        f"{args.group_threshold if args.lags_dense_group_threshold is None else args.lags_dense_group_threshold}, "
        f"{args.lags_sparse_values} values; "
        + ("freed memory kept (GLIBC_TUNABLES)" if args.keep_freed_memory else "glibc allocator defaults")
    )
    print_table(header, rows, caption)
    paired = paired_lines(results)
    if paired:
        print("\n".join(["LAGS minus baseline, paired by interleaved round:", *paired]), file=sys.stderr)
    output = reserve_result_path(args.output_dir, "lags_bandwidth")
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    payload = {
        "benchmark": "lags_bandwidth",
        "created_utc": output.stem.removeprefix("lags_bandwidth-"),
        "command": ["lags_bandwidth.py", *argv],
        "wall_s": time.perf_counter() - started,
        "settings": {k: v for k, v in settings.items() if not k.startswith("inner_")},
        "machine": machine,
        "results": results,
    }
    paired_md = "".join(f"- {line}\n" for line in paired)
    markdown = f"{caption}\n\n{markdown_table(header, rows)}"
    write_results(
        output, payload, markdown + (f"\nLAGS minus baseline, paired by round:\n\n{paired_md}" if paired else "")
    )
    print(f"wrote {output} and {output.with_suffix('.md').name}", file=sys.stderr)
    return output


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
