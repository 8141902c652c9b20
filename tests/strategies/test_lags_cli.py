"""`hpml fit --trainer.strategy lags --trainer.devices 2`: the console script trains a tiny FADNet with LAGS."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.integration.configs import sceneflow_data, tiny_config


def test_hpml_fit_with_lags_on_two_processes(tmp_path):
    config = tiny_config(tmp_path, sceneflow_data(tmp_path / "sceneflow"), max_epochs=2)
    hpml = Path(sys.executable).with_name("hpml")
    run = subprocess.run(
        [str(hpml), "fit", "--config", str(config), "--trainer.strategy", "lags", "--trainer.devices", "2"]
        + ["--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (metrics_file,) = (tmp_path / "logs").rglob("metrics.csv")
    rows = [row for row in csv.DictReader(metrics_file.open()) if row.get("lags/density")]
    assert len(rows) >= 4  # 2 epochs x 3 batches, one row per optimizer step
    for row in rows:
        assert 0 < float(row["lags/density"]) <= 1
        assert float(row["lags/bytes_sent"]) <= float(row["lags/dense_bytes"]) + 1e-6
