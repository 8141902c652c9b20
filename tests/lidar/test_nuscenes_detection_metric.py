"""NuScenesDetectionMetric: devkit evaluation of ground truth fed back as predictions, perturbed predictions, errors."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("nuscenes")

from lightning_hpml.datamodules.lidar.nuscenes import NuScenesDataModule
from lightning_hpml.metrics.nuscenes_detection import NUSCENES_METRIC_NAMES, NuScenesDetectionMetric


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory):
    dm = NuScenesDataModule(
        root=None,
        synthetic_dir=str(tmp_path_factory.mktemp("nus") / "syn"),
        max_sweeps=1,
        num_workers=0,
        batch_size=2,
        synthetic_options={"azimuth_steps": 512, "keyframes_per_scene": 3},
    )
    dm.prepare_data()
    dm.setup("validate")
    return dm


def _ground_truth(dm, split="val"):
    """Per-sample (token, boxes, labels, velocity, attributes) of the evaluation dataset (all annotated classes)."""
    dataset = dm.datasets[split]
    out = []
    for index, info in enumerate(dataset.infos):
        item = dataset[index]
        keep = (info["num_lidar_pts"] >= 1) & (info["names"] != "ignore")
        attributes = [a for a, k in zip(info["attributes"], keep) if k]
        # Items keep the same boxes in the same order as the filtered infos (no range cut on this small data).
        assert len(attributes) == len(item["boxes"])
        out.append((item["sample_token"], item["boxes"], item["labels"], item["velocity"], attributes))
    return out


def _feed(metric, gt, shift=0.0, with_extras=True):
    for token, boxes, labels, velocity, attributes in gt:
        moved = boxes.clone()
        moved[:, 0] += shift
        metric.update(
            [token],
            [moved],
            [torch.linspace(0.9, 0.5, len(boxes))],
            [labels],
            velocities=[velocity] if with_extras else None,
            attributes=[attributes] if with_extras else None,
        )


def test_ground_truth_as_predictions_scores_perfectly(datamodule, tmp_path):
    metric = datamodule.detection_metric(output_dir=str(tmp_path / "eval"))
    _feed(metric, _ground_truth(datamodule))
    result = metric.compute()
    assert set(NUSCENES_METRIC_NAMES) <= set(result) and len(result) == 17
    assert result["map"] == pytest.approx(1.0)
    assert result["nds"] > 0.99
    assert all(result[f"ap_{name}"] == pytest.approx(1.0) for name in datamodule.classes)
    assert result["mate"] < 1e-3 and result["mase"] < 1e-3 and result["maoe"] < 1e-3 and result["mave"] < 1e-3
    assert result["maae"] == pytest.approx(0.0)
    written = json.loads((tmp_path / "eval" / "results_nusc.json").read_text())
    assert written["meta"]["use_lidar"] is True and len(written["results"]) == len(datamodule.datasets["val"])
    assert (tmp_path / "eval" / "metrics_summary.json").is_file()


def test_defaults_and_perturbations_lower_the_scores(datamodule):
    gt = _ground_truth(datamodule)
    plain = datamodule.detection_metric()
    _feed(plain, gt, with_extras=False)  # velocity (0, 0) and the class's default attribute
    baseline = plain.compute()
    assert baseline["map"] == pytest.approx(1.0) and baseline["mave"] > 0.05 and baseline["nds"] < 0.99
    shifted = datamodule.detection_metric()
    _feed(shifted, gt, shift=1.5)  # misses the 0.5 m and 1 m thresholds, matches at 2 m and 4 m
    result = shifted.compute()
    assert result["map"] == pytest.approx(0.5, abs=0.05)
    assert result["mate"] == pytest.approx(1.5, abs=0.01)
    assert result["nds"] == pytest.approx((5 * 0.5 + 0 + 4) / 10, abs=0.02)  # mATE 1.5 m scores 0


def test_rotation_is_undone_and_duplicates_count_once(datamodule):
    rotated = NuScenesDataModule(
        root=str(datamodule.data_root),
        train_split="synthetic_train",
        val_split="synthetic_val",
        max_sweeps=1,
        test_rotation="random",
        num_workers=0,
        batch_size=2,
    )
    rotated.setup("validate")
    metric = rotated.detection_metric()
    for batch in list(rotated.val_dataloader()) * 2:  # every sample twice, as DDP padding can do
        assert batch["rotation"].abs().sum() > 0
        scores = [torch.ones(len(b)) for b in batch["boxes"]]
        metric.update(batch["sample_token"], batch["boxes"], scores, batch["labels"], rotation=batch["rotation"])
    result = metric.compute()
    assert result["map"] == pytest.approx(1.0) and result["mate"] < 1e-3 and result["maoe"] < 1e-3


def test_eval_split_counts_unpredicted_samples_as_missed(datamodule):
    gt = _ground_truth(datamodule)
    metric = datamodule.detection_metric(eval_split="synthetic_val")
    _feed(metric, gt[:1])
    assert metric.compute()["map"] < 0.9
    subset = datamodule.detection_metric(classes=("car", "pedestrian"))
    for token, boxes, labels, velocity, attributes in gt:
        keep = (labels == 1) | (labels == 9)
        subset.update([token], [boxes[keep]], [torch.ones(int(keep.sum()))], [torch.where(labels[keep] == 1, 1, 2)])
    result = subset.compute()
    assert set(result) == {*NUSCENES_METRIC_NAMES, "ap_car", "ap_pedestrian"} and result["map"] == pytest.approx(1.0)


def test_errors(datamodule, tmp_path):
    metric = datamodule.detection_metric()
    with pytest.raises(RuntimeError, match="before any update"), pytest.warns(UserWarning, match="before the"):
        metric.compute()
    with pytest.raises(ValueError, match="1-based"):
        metric.update(["t"], [torch.zeros(1, 7)], [torch.ones(1)], [torch.tensor([0])])
    with pytest.raises(ValueError, match="2 scores"):
        metric.update(["t"], [torch.zeros(1, 7)], [torch.ones(2)], [torch.tensor([1])])
    with pytest.raises(ValueError, match="dataroot"):
        NuScenesDetectionMetric()
    missing = NuScenesDetectionMetric(dataroot=str(tmp_path / "none"))
    missing.update(["t"], [torch.zeros(0, 7)], [torch.ones(0)], [torch.zeros(0, dtype=torch.long)])
    with pytest.raises(FileNotFoundError, match=r"v1\.0-mini.*sample\.json"):
        missing.compute()
