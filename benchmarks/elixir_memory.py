"""Step time and device memory of ElixirStrategy next to plain training (and FSDP CPU offload on a GPU).

Every configuration trains a GPT-2 (``lightning_hpml.modules.language``) with AdamW on the synthetic token stream
through the real Lightning ``Trainer``, in its own subprocess, for ``--steps`` steps; the median time of the steps
after ``--warmup`` (``on_train_batch_start`` to ``on_train_batch_end``, optimizer step included) is its step time.
Configurations are interleaved over ``--rounds`` rounds so drift on a shared machine hits all of them.

CPU (default): ``plain`` (``strategy="auto"``), ``elixir`` with no budget, and ``elixir`` under a budget of 25 % of
the model state (16 bytes per parameter: fp32 weights, gradients, two Adam moments), searched placement and all
shards on the CPU, and under 16 % (the cache holds about half the public chunks, so it evicts and re-gathers). It reports each one's step-time ratio to ``plain`` and Elixir's booked peak bytes, gathers and
evictions per step. On CPU the "device" is host memory, so the budget is Elixir's own ledger.

GPU (``--device cuda``, not yet run by the project): the same at ``--cap-gib`` (``set_per_process_memory_fraction``)
over ``--models``, with ``plain`` in bf16 AMP, ``fsdp_offload`` (Lightning ``FSDPStrategy(cpu_offload=True)``) and
Elixir in bf16, reporting tokens/s and ``torch.cuda.max_memory_allocated``; a configuration that runs out of memory
is reported as such, so the table shows the largest model each method trains under the cap.

Usage::

    python benchmarks/elixir_memory.py                       # CPU, about 3 minutes on 2 cores
    python benchmarks/elixir_memory.py --device cuda --models gpt2_small gpt2_400m gpt2_1b --cap-gib 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def train_once(config: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this process; returns timings and memory (runs in the subprocess)."""
    import lightning as L
    import torch

    from lightning_hpml.datamodules.text import TokenStreamDataModule
    from lightning_hpml.modules.language import GPT2LMModule
    from lightning_hpml.strategies import ElixirStrategy

    torch.set_num_threads(config["threads"])
    device = config["device"]
    times: list[float] = []

    class StepTimer(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    if device == "cuda" and config.get("cap_gib"):
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, config["cap_gib"] * 2**30 / total))
    model = GPT2LMModule(config["model"], vocab_size=config["vocab"], max_len=config["seq_len"], lr=1e-4)
    model.configure_model()
    n_params = sum(p.numel() for p in model.parameters())
    method = config["method"]
    strategy: Any = "auto"
    if method.startswith("elixir"):
        limit = None if config.get("budget_frac") is None else int(config["budget_frac"] * 16 * n_params)
        if device == "cuda" and config.get("cap_gib"):
            limit = int(config["cap_gib"] * 2**30 * 0.9)
        strategy = ElixirStrategy(device_memory_limit=limit, offload=config.get("offload", "auto"), print_plan=False)
    elif method == "fsdp_offload":
        from lightning.pytorch.strategies import FSDPStrategy

        strategy = FSDPStrategy(cpu_offload=True)
    trainer = L.Trainer(
        accelerator=device,
        devices=1,
        strategy=strategy,
        precision=config["precision"],
        max_steps=config["steps"],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[StepTimer()],
        limit_val_batches=0,
    )
    data = TokenStreamDataModule(
        seq_len=config["seq_len"],
        vocab_size=config["vocab"],
        batch_size=config["batch"],
        synthetic_tokens=config["seq_len"] * config["batch"] * (config["steps"] + 2) + 1,
    )
    status = "ok"
    try:
        trainer.fit(model, datamodule=data)
    except torch.cuda.OutOfMemoryError:
        status = "out of memory"
    steady = times[config["warmup"] :]
    result = {**config, "status": status, "params": n_params}
    if steady:
        step = statistics.median(steady)
        result.update(step_s=step, tokens_per_s=config["batch"] * config["seq_len"] / step)
    if device == "cuda":
        result["max_memory_allocated"] = torch.cuda.max_memory_allocated()
    if isinstance(strategy, ElixirStrategy) and strategy.stats:
        result.update(
            elixir_peak_bytes=strategy.stats["peak_bytes"],
            elixir_limit=strategy.device_memory_limit,
            gathers_per_step=strategy.stats["gathers"] / config["steps"],
            evictions_per_step=strategy.stats["evictions"] / config["steps"],
            plan=strategy.plan.to_dict() | {"access": len(strategy.plan.access)},
        )
    return result


def run_subprocess(config: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--single", json.dumps(config)], capture_output=True, text=True, check=False
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {**config, "status": f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}"}
    return json.loads(lines[-1])


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = {
        "device": args.device,
        "steps": args.steps,
        "warmup": args.warmup,
        "seq_len": args.seq_len,
        "batch": args.batch,
        "vocab": args.vocab,
        "threads": args.threads,
    }
    configs = []
    for model in args.models:
        if args.device == "cpu":
            configs += [
                {**base, "model": model, "method": "plain", "precision": "32-true"},
                {**base, "model": model, "method": "elixir_unlimited", "precision": "32-true"},
                {**base, "model": model, "method": "elixir_25pct", "precision": "32-true", "budget_frac": 0.25},
                {
                    **base,
                    "model": model,
                    "method": "elixir_25pct_cpu_offload",
                    "precision": "32-true",
                    "budget_frac": 0.25,
                    "offload": "cpu",
                },
                {**base, "model": model, "method": "elixir_16pct", "precision": "32-true", "budget_frac": 0.16},
            ]
        else:
            for method in ("plain", "fsdp_offload", "elixir"):
                configs.append(
                    {**base, "model": model, "method": method, "precision": "bf16-mixed", "cap_gib": args.cap_gib}
                )
    return configs


def machine() -> dict[str, Any]:
    import platform

    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", nargs="+", default=["gpt2_bench"])
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cap-gib", type=float, default=16.0)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(train_once(json.loads(args.single))))
        return

    configs = configurations(args)
    rounds: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
    for _ in range(args.rounds):
        for i, config in enumerate(configs):
            rounds[i].append(run_subprocess(config))
            print(
                f"{config['model']} {config['method']}: {rounds[i][-1].get('step_s', rounds[i][-1]['status'])}",
                flush=True,
            )
    results = []
    for runs in rounds.values():
        ok = [r for r in runs if r.get("status") == "ok"]
        best = dict(ok[0] if ok else runs[0])
        if ok:
            best["step_s"] = statistics.median(r["step_s"] for r in ok)
            best["tokens_per_s"] = best["batch"] * best["seq_len"] / best["step_s"]
            best["rounds_step_s"] = [r["step_s"] for r in ok]
        results.append(best)
    plain = {r["model"]: r.get("step_s") for r in results if r["method"] == "plain"}

    from _report import markdown_table, reserve_result_path, write_results

    rows = []
    for r in results:
        ratio = r.get("step_s") / plain[r["model"]] if r.get("step_s") and plain.get(r["model"]) else None
        r["ratio_to_plain"] = ratio
        mem = r.get("elixir_peak_bytes") or r.get("max_memory_allocated")
        rows.append(
            [
                r["model"],
                f"{r.get('params', 0) / 1e6:.1f}M",
                r["method"],
                r["status"][:80],
                f"{r['step_s'] * 1e3:.0f}" if r.get("step_s") else "-",
                f"{ratio:.3f}" if ratio else "-",
                f"{mem / 2**20:.1f}" if mem else "-",
                f"{r['gathers_per_step']:.0f}/{r['evictions_per_step']:.0f}" if "gathers_per_step" in r else "-",
            ]
        )
    table = markdown_table(
        ["model", "params", "method", "status", "step ms", "x plain", "peak MiB", "gathers/evictions per step"], rows
    )
    print(table)
    output = reserve_result_path(RESULTS, f"elixir_memory-{args.device}")
    write_results(output, {"machine": machine(), "args": vars(args), "results": results}, table)
    print(f"wrote {output} and .md")


if __name__ == "__main__":
    main()
