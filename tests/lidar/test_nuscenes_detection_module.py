"""LiDARDetectionModule on nuScenes: training steps, then the devkit's mAP / NDS with and without RIDE's rotation."""

from __future__ import annotations

import lightning as L
import pytest

pytest.importorskip("nuscenes")

from lightning_hpml.datamodules.formats.nuscenes import DETECTION_CLASSES
from lightning_hpml.datamodules.lidar import NuScenesDataModule
from lightning_hpml.modules.lidar import LiDARDetectionModule, ride_ia_ssd_tiny

MEAN_SIZES = ((4.63, 1.97, 1.74), (6.93, 2.51, 2.84), (6.37, 2.85, 3.19), (10.5, 2.94, 3.47), (12.29, 2.90, 3.87),
              (0.50, 2.53, 0.98), (2.11, 0.77, 1.47), (1.70, 0.60, 1.28), (0.73, 0.67, 1.77), (0.41, 0.41, 1.07))  # fmt: skip


def test_fit_and_test_report_nuscenes_map_and_nds_under_both_protocols(tmp_path):
    L.seed_everything(0)
    data = NuScenesDataModule(
        max_sweeps=3, num_points=2048, batch_size=2, num_workers=0, synthetic_dir=str(tmp_path / "nuscenes"),
        synthetic_options={"azimuth_steps": 512},
    )  # fmt: skip
    detector = ride_ia_ssd_tiny(num_classes=10, num_point_features=2, mean_sizes=MEAN_SIZES)
    model = LiDARDetectionModule(detector, classes=DETECTION_CLASSES, robustness_key="map")
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, gradient_clip_val=10,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert "val/nds" in trainer.callback_metrics
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    for prefix in ("test", "test/ar"):
        for key in ("map", "nds", "mate", "ap_car"):
            assert 0.0 <= metrics[f"{prefix}/{key}"] <= 1.0 or key == "mate"
    assert "test/rotation_robustness" in metrics
    assert metrics["test/rotation_drop"] == pytest.approx(metrics["test/map"] - metrics["test/ar/map"])
