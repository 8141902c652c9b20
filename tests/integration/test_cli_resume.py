"""`hpml fit` end to end, and resuming from the last checkpoint reproduces an uninterrupted run exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from lightning_hpml.cli import main

from .configs import sceneflow_data, tiny_config


def _fit(config: Path, root: Path, max_epochs: int, ckpt_path: Path | None = None):
    args = [
        "fit",
        "--config",
        str(config),
        "--trainer.max_epochs",
        str(max_epochs),
        "--trainer.default_root_dir",
        str(root),
    ]
    if ckpt_path is not None:
        args += ["--ckpt_path", str(ckpt_path)]
    return main(args)


def test_resume_from_last_checkpoint_matches_uninterrupted_run(tmp_path):
    config = tiny_config(tmp_path, sceneflow_data(tmp_path / "sceneflow"))

    full = _fit(config, tmp_path / "full", max_epochs=3)
    full_metrics = {k: float(v) for k, v in full.trainer.callback_metrics.items()}
    full_state = {k: v.clone() for k, v in full.model.state_dict().items()}

    first = _fit(config, tmp_path / "part", max_epochs=2)
    last = Path(first.trainer.checkpoint_callback.last_model_path)
    assert last.is_file()
    resumed = _fit(config, tmp_path / "resumed", max_epochs=3, ckpt_path=last)
    resumed_metrics = {k: float(v) for k, v in resumed.trainer.callback_metrics.items()}

    assert resumed.trainer.current_epoch == full.trainer.current_epoch == 3
    assert resumed.trainer.global_step == full.trainer.global_step
    assert "val/epe" in full_metrics
    for key, value in full_metrics.items():
        assert resumed_metrics[key] == value, key
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, full_state[key], rtol=0, atol=0, msg=key)
    # The round-reset learning-rate schedule was restored: round 2 starts at epoch 1, halving every epoch.
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == 1e-3 * 0.5**2
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == full.trainer.optimizers[0].param_groups[0]["lr"]


def test_console_script_prints_config():
    hpml = Path(sys.executable).with_name("hpml")
    out = subprocess.run([str(hpml), "fit", "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "--trainer" in out.stdout
