"""LiDARDetectionModule: scene rotation, KITTI result labels, brief training through ``hpml``, RIDE's rotation test,
the prediction writer and the bird's-eye view."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import open3d as o3d
import pytest
import torch

from lightning_hpml.callbacks import LiDARPredictionWriter
from lightning_hpml.cli import main
from lightning_hpml.datamodules.formats.kitti_object import camera_boxes_to_lidar, kitti_result_label, read_label
from lightning_hpml.datamodules.lidar import KITTIObjectDataModule
from lightning_hpml.metrics.kitti_detection import KITTIDetectionAP
from lightning_hpml.modules.lidar import LiDARDetectionModule, ride_ia_ssd_tiny
from lightning_hpml.modules.lidar.detection_module import rotate_scene, scene_rotation_angle
from lightning_hpml.viz.bev import bird_eye_view

DEMO = Path(__file__).parents[2] / "configs" / "demo_ride_synthetic.yaml"


def test_rotate_scene_moves_points_with_boxes_and_undoes_itself():
    points = torch.tensor([[10.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, 0.1]])
    boxes = torch.tensor([[10.0, 0.0, -0.5, 4.0, 2.0, 1.5, 3.0]])
    turned_points, turned_boxes = rotate_scene(points, boxes, math.pi / 2)
    assert torch.allclose(turned_points, torch.tensor([[0.0, 10.0, -1.0, 0.5], [-2.0, 0.0, 0.0, 0.1]]), atol=1e-6)
    assert torch.allclose(turned_boxes[0, :6], torch.tensor([0.0, 10.0, -0.5, 4.0, 2.0, 1.5]), atol=1e-6)
    assert turned_boxes[0, 6] == pytest.approx(3.0 + math.pi / 2 - 2 * math.pi, abs=1e-6)  # wrapped to [-pi, pi)
    back_points, back_boxes = rotate_scene(turned_points, turned_boxes, -math.pi / 2)
    assert torch.allclose(back_points, points, atol=1e-5) and torch.allclose(back_boxes, boxes, atol=1e-5)


def test_scene_rotation_angles_are_reproducible_and_spread_over_the_circle():
    angles = [scene_rotation_angle(0, f"{i:06d}") for i in range(400)]
    assert angles == [scene_rotation_angle(0, f"{i:06d}") for i in range(400)]
    assert all(-math.pi <= a < math.pi for a in angles)
    assert np.histogram(angles, bins=4, range=(-math.pi, math.pi))[0].min() > 60  # roughly uniform
    assert scene_rotation_angle(1, "000000") != scene_rotation_angle(0, "000000")


def test_kitti_result_labels_of_converted_ground_truth_score_100(tmp_path):
    data = KITTIObjectDataModule(num_points=None, batch_size=2, num_workers=0, synthetic_dir=str(tmp_path / "kitti"))
    data.prepare_data()
    data.setup("validate")
    predictions, truths = [], []
    for batch in data.val_dataloader():
        for annos, calib, shape in zip(batch["annos"], batch["calib"], batch["image_shape"]):
            keep = annos["name"] != "DontCare"
            boxes = camera_boxes_to_lidar(
                annos["location"][keep], annos["dimensions"][keep], annos["rotation_y"][keep], calib
            )
            label = kitti_result_label(boxes, np.ones(len(boxes)), list(annos["name"][keep]), calib, shape)
            assert np.allclose(label["location"], annos["location"][keep], atol=1e-6)
            assert np.allclose(label["rotation_y"], annos["rotation_y"][keep], atol=1e-6)
            predictions.append(label)
            truths.append(annos)
    metric = KITTIDetectionAP(classes=("Car",))
    metric.update(predictions, truths)
    results = metric.compute()
    # the same boxes: every counted car is matched (AP is capped by the number of cars below 41, see the metric)
    assert (
        results["ap3d_car_mod_r40"] == pytest.approx(results["apbev_car_mod_r40"]) and results["ap3d_car_mod_r40"] > 0
    )
    perfect = float(results["ap3d_car_mod_r40"])
    shifted = [dict(p, location=p["location"] + np.array([0.8, 0.0, 0.0])) for p in predictions]
    metric.reset()
    metric.update(shifted, truths)
    assert float(metric.compute()["ap3d_car_mod_r40"]) < perfect


@pytest.mark.slow
def test_brief_training_raises_ap_and_hpml_test_runs_the_rotation_protocol(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(DEMO), "--trainer.enable_progress_bar", "false"]
    before = main(["test", *args], run=True).trainer.callback_metrics
    fit = main(["fit", *args, "--trainer.check_val_every_n_epoch", "30"], run=True)
    checkpoint = Path(fit.trainer.checkpoint_callback.last_model_path)
    after = main(["test", *args, "--ckpt_path", str(checkpoint)], run=True).trainer.callback_metrics
    # measured (2-core CPU, seed 0): BEV loose AP 0 -> 7.2, 3D loose 0 -> 4.2 after 30 epochs of 24 frames
    assert float(after["test/apbev_mod_r40_loose"]) > float(before["test/apbev_mod_r40_loose"]) + 3.0
    assert float(after["test/ap3d_mod_r40_loose"]) > float(before["test/ap3d_mod_r40_loose"]) + 1.0
    for key in ("test/ar/apbev_mod_r40_loose", "test/rotation_robustness", "test/rotation_drop"):
        assert key in after
    nr, ar = float(after["test/apbev_mod_r40_loose"]), float(after["test/ar/apbev_mod_r40_loose"])
    assert float(after["test/rotation_robustness"]) == pytest.approx(ar / nr)
    assert float(after["test/rotation_drop"]) == pytest.approx(nr - ar)
    assert "val/bev" in _tensorboard_tags(tmp_path / "runs" / "ride_demo")


def _tensorboard_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["images"])
    return tags


def test_prediction_writer_writes_kitti_results_and_point_clouds(tmp_path):
    L.seed_everything(0)
    data = KITTIObjectDataModule(
        num_points=1024, batch_size=2, num_workers=0, classes=("Car",), synthetic_dir=str(tmp_path / "kitti"),
        synthetic_options={"num_train": 4, "num_test": 2, "azimuth_steps": 256},
    )  # fmt: skip
    model = LiDARDetectionModule(
        ride_ia_ssd_tiny(num_classes=1, mean_sizes=((3.9, 1.6, 1.56),)), classes=("Car",), score_threshold=0.0
    )
    writer = LiDARPredictionWriter(str(tmp_path / "out"), classes=("Car",))
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False)
    predictions = trainer.predict(model, datamodule=data)
    frames = [d["frame_id"] for batch in predictions for d in batch]
    assert len(frames) == 2
    for batch in predictions:
        for detection in batch:
            frame = detection["frame_id"]
            label = read_label(tmp_path / "out" / "label_2" / f"{frame}.txt")
            assert len(label["name"]) == len(detection["boxes"]) > 0 and set(label["name"]) == {"Car"}
            assert np.allclose(np.sort(label["score"]), np.sort(detection["scores"].numpy()), atol=1e-4)
            cloud = o3d.io.read_point_cloud(str(tmp_path / "out" / "points" / f"{frame}.ply"))
            assert len(cloud.points) == 1024
            lines = o3d.io.read_line_set(str(tmp_path / "out" / "boxes" / f"{frame}.ply"))
            assert len(lines.lines) == 12 * len(detection["boxes"])
    with pytest.raises(FileExistsError, match="not empty"):
        trainer.predict(model, datamodule=data)


def test_bird_eye_view_draws_boxes_where_they_are():
    points = np.array([[30.0, 5.0, -1.0, 1.0]])
    box = np.array([[20.0, 0.0, -0.5, 4.0, 2.0, 1.5, 0.0]])
    image = bird_eye_view(points, gt_boxes=box, x_range=(0.0, 40.0), y_range=(-10.0, 10.0), resolution=0.1)
    assert image.shape == (400, 200, 3)
    assert image[100, 50].tolist() == [255, 255, 255]  # the point at x = 30 m, y = 5 m: row 100, column 50
    green = np.argwhere((image[..., 1] > 150) & (image[..., 0] < 120))
    rows, cols = green[:, 0], green[:, 1]
    # the box spans x 18..22 m (rows 180..220) and y -1..1 m (columns 90..110)
    assert 178 <= rows.min() <= 182 and 218 <= rows.max() <= 222
    assert 88 <= cols.min() <= 92 and 108 <= cols.max() <= 112
    with pytest.raises(ValueError, match="pred_scores"):
        bird_eye_view(points, pred_boxes=box, pred_scores=[0.5, 0.2])
