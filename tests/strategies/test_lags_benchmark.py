"""``benchmarks/lags_bandwidth.py`` end to end on the host loopback (no root, no throttling), with tiny models.

It guards the benchmark's plumbing (spawned Gloo ranks, every method, the ``/proc/net/dev`` byte counter, JSON and
Markdown output), not its numbers: those need the throttled namespaces and a quiet machine. As root the run gets its
own (unthrottled) network namespace, so the wire-byte counter sees only its own traffic and is compared; without
root it runs on the host loopback, where other processes' traffic (e.g. parallel tests) also counts, so only the
reducer's own byte accounting is compared.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lags_bandwidth.py"
METHODS = ("compute_only", "dense_ddp", "powersgd", "topk_global", "lags_fixed", "lags_adaptive")


def test_quick_run_reports_every_method(tmp_path):
    own_namespace = os.geteuid() == 0 and shutil.which("ip") is not None
    command = [sys.executable, str(SCRIPT), "--rates", "unthrottled", "--quick", "--steps", "2"]
    if not own_namespace:
        command.append("--no-netns")
    run = subprocess.run(
        [*command, "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=180, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    (output,) = tmp_path.glob("lags_bandwidth-*.json")
    assert output.with_suffix(".md").is_file()
    payload = json.loads(output.read_text())
    assert payload["machine"]["world_size"] == 2
    assert payload["settings"]["keep_freed_memory"] is True
    (result,) = payload["results"]
    assert result["rate"] == "unthrottled"
    records = {(r["model"], r["method"]): r for r in result["records"]}
    assert set(records) == {(model, method) for model in ("cnn", "transformer") for method in METHODS}
    for (model, method), record in records.items():
        for key in ("iter_s_mean", "iter_s_median", "cpu_s_per_iter", "main_thread_cpu_s_per_iter"):
            assert math.isfinite(record[key]) and record[key] > 0, (model, method, key, record[key])
        assert record["main_thread_cpu_s_per_iter"] <= record["cpu_s_per_iter"] + 1e-3  # one thread of the process
        assert record["minor_faults_per_iter"] >= 0
        assert record["steps"] == 2
        assert len(record["iter_s_rounds"]) == payload["settings"]["rounds"]
    paired = {(c["model"], c["method"], c["baseline"]): c for c in result["paired"]}
    lags_methods, baselines = ("lags_fixed", "lags_adaptive"), ("powersgd", "topk_global", "dense_ddp")
    assert set(paired) == {(m, lags, b) for m in ("cnn", "transformer") for lags in lags_methods for b in baselines}
    for (model, method, baseline), compared in paired.items():
        rounds = records[model, method]["iter_s_rounds"], records[model, baseline]["iter_s_rounds"]
        expected = sum(a - b for a, b in zip(*rounds, strict=True)) / len(rounds[0])
        assert math.isclose(compared["diff_s_mean"], expected, rel_tol=1e-9, abs_tol=1e-12)
        low, high = compared["diff_s_ci95"]
        assert low <= compared["diff_s_mean"] <= high
        assert compared["faster_in_rounds"] == sum(a < b for a, b in zip(*rounds, strict=True))
    assert "paired by round" in output.with_suffix(".md").read_text()
    for model in ("cnn", "transformer"):
        dense = records[model, "dense_ddp"]["wire_bytes_per_rank_per_iter"]
        assert records[model, "dense_ddp"]["speedup_vs_dense_ddp"] == 1.0
        if own_namespace:
            assert records[model, "lags_fixed"]["wire_bytes_per_rank_per_iter"] < dense
        assert records[model, "lags_adaptive"]["link_cost"] is not None
        for method in ("lags_fixed", "lags_adaptive"):
            stats = records[model, method]["stats"]
            assert 0 < stats["bytes_sent"] <= stats["dense_bytes"], (model, method, stats)
        assert (
            records[model, "lags_fixed"]["stats"]["bytes_sent"] < records[model, "lags_fixed"]["stats"]["dense_bytes"]
        )
