"""Tiny LightningCLI configs for integration tests (real Trainer, real synthetic datasets on disk)."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY_ROUNDS = [
    {"weights": [0.32, 0.16, 0.08, 0.04, 0.02, 0.01, 0.005], "epochs": 1},
    {"weights": [1.0, 0, 0, 0, 0, 0, 0], "epochs": 5},
]


def tiny_config(tmp_path: Path, data: dict, max_epochs: int = 2, name: str = "config.yaml") -> Path:
    """Write a config training ``fadnet_tiny``-sized FADNet on ``data`` for a few batches per epoch."""
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": max_epochs,
            "limit_train_batches": 3,
            "limit_val_batches": 2,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(tmp_path / "logs")},
            },
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}}
            ],
        },
        "model": {
            "class_path": "lightning_hpml.modules.stereo.StereoModule",
            "init_args": {
                "net": {"class_path": "lightning_hpml.modules.stereo.FADNet", "init_args": {"width": 0.0625}},
                "loss_rounds": TINY_ROUNDS,
                "lr": 1e-3,
                "lr_halving_epochs": 1,
                "log_images": False,
            },
        },
        "data": data,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def sceneflow_data(synthetic_dir: Path) -> dict:
    return {
        "class_path": "lightning_hpml.datamodules.stereo.SceneFlowDataModule",
        "init_args": {
            "root": None,
            "synthetic_dir": str(synthetic_dir),
            "crop_size": [64, 128],
            "batch_size": 2,
            "num_workers": 0,
            "synthetic_options": {"height": 96, "width": 192},
        },
    }


def kitti_data(synthetic_dir: Path) -> dict:
    """A tiny synthetic KITTI 2015 tree: 4 training pairs (frame 1 validates), 3 test pairs."""
    return {
        "class_path": "lightning_hpml.datamodules.stereo.KITTIStereoDataModule",
        "init_args": {
            "root": None,
            "year": 2015,
            "synthetic_dir": str(synthetic_dir),
            "crop_size": [64, 128],
            "batch_size": 2,
            "num_workers": 0,
            "val_indices": [1],
            "synthetic_options": {"num_train": 4, "num_test": 3, "height": 80, "width": 200},
        },
    }
