"""`hpml predict` writes disparity maps in the dataset's own format and never overwrites without being asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_hpml.cli import main
from lightning_hpml.datamodules.formats import read_kitti_disparity, read_pfm

from .configs import kitti_data, sceneflow_data, tiny_config


def _train_and_checkpoint(config: Path, root: Path) -> Path:
    cli = main(["fit", "--config", str(config), "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root)])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def _predict(config: Path, ckpt: Path, out: Path, *extra: str):
    return main(
        [
            "predict",
            "--config",
            str(config),
            "--ckpt_path",
            str(ckpt),
            "--trainer.callbacks+=lightning_hpml.callbacks.DisparityWriter",
            "--trainer.callbacks.output_dir",
            str(out),
            *extra,
        ]
    )


def test_predict_kitti_writes_submission_pngs_and_refuses_to_overwrite(tmp_path):
    config = tiny_config(tmp_path, kitti_data(tmp_path / "kitti"))
    ckpt = _train_and_checkpoint(config, tmp_path / "fit")
    out = tmp_path / "submission"
    _predict(config, ckpt, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["disp_0/000000_10.png", "disp_0/000001_10.png", "disp_0/000002_10.png"]
    disp, valid = read_kitti_disparity(out / files[0])
    assert disp.shape == (80, 200)  # native size: the evaluation padding was cropped away
    assert valid.all()  # every pixel has a prediction
    before = (out / files[0]).read_bytes()
    with pytest.raises(FileExistsError, match="submission"):
        _predict(config, ckpt, out)
    assert (out / files[0]).read_bytes() == before
    _predict(config, ckpt, out, "--trainer.callbacks.overwrite", "true")


def test_predict_sceneflow_writes_pfm(tmp_path):
    config = tiny_config(tmp_path, sceneflow_data(tmp_path / "sceneflow"))
    ckpt = _train_and_checkpoint(config, tmp_path / "fit")
    out = tmp_path / "pred"
    _predict(config, ckpt, out)
    files = sorted(out.rglob("*.pfm"))
    assert files and all("FlyingThings3D/TEST" in p.as_posix() for p in files)
    disp = read_pfm(files[0])
    assert disp.shape == (96, 192) and np.isfinite(disp).all()
