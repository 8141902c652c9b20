"""``hpml fit --config configs/elixir_gpt2_synthetic.yaml``: the shipped config trains under its chunk budget."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import yaml

CONFIG = Path(__file__).parents[2] / "configs" / "elixir_gpt2_synthetic.yaml"


def test_shipped_elixir_config_trains_within_its_budget(tmp_path):
    hpml = Path(sys.executable).with_name("hpml")
    run = subprocess.run(
        [
            str(hpml),
            "fit",
            "--config",
            str(CONFIG),
            "--trainer.max_steps",
            "6",
            "--trainer.val_check_interval",
            "3",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.log_every_n_steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Elixir plan" in run.stdout
    (metrics_file,) = (tmp_path / "runs").rglob("metrics.csv")
    rows = [row for row in csv.DictReader(metrics_file.open()) if row.get("elixir/gathers")]
    assert len(rows) == 6
    budget_mib = yaml.safe_load(CONFIG.read_text())["trainer"]["strategy"]["init_args"]["device_memory_limit"] / 2**20
    for row in rows:
        assert float(row["elixir/evictions"]) > 0  # the budget is binding: chunks are re-gathered in backward
        assert float(row["elixir/peak_device_mib"]) <= budget_mib
    losses = [float(row["train/loss"]) for row in csv.DictReader(metrics_file.open()) if row.get("train/loss")]
    assert losses[-1] < losses[0]
