"""KITTIObjectDataModule on a synthetic tree: batch keys, augmentation that keeps points inside their boxes, gt
sampling without collisions, RIDE's reproducible test rotation, exact-resume seeding, and clear errors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.formats.kitti_object import (
    KittiCalibration,
    KittiObjectFormatError,
    bev_boxes_overlap,
    points_in_boxes,
    read_label,
)
from lightning_hpml.datamodules.lidar import GTDatabase, KITTIObjectDataModule
from lightning_hpml.datamodules.lidar.augmentation import (
    global_scaling,
    random_flip_x,
    rotate_about_z,
    sample_points,
)
from lightning_hpml.datamodules.synthetic.kitti_object_writer import write_kitti_object
from lightning_hpml.datamodules.synthetic.output_tree import README_NAME

TREE = {"num_train": 8, "num_test": 2, "azimuth_steps": 512, "seed": 3}
WIDE = (-80.0, -80.0, -5.0, 80.0, 80.0, 5.0)  # nothing leaves the range after a rotation


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kitti_object(tmp_path_factory.mktemp("kobj_dm") / "kitti", **TREE)


def _module(root: Path, stage: str = "fit", **kwargs) -> KITTIObjectDataModule:
    dm = KITTIObjectDataModule(root=str(root), num_workers=0, **{"batch_size": 2, **kwargs})
    dm.setup(stage)
    return dm


def test_train_and_val_batches(root: Path) -> None:
    dm = _module(root, num_points=4096)
    batch = next(iter(dm.train_dataloader()))
    keys = {"points", "boxes", "labels", "frame_id", "calib", "annos", "rotation", "image_shape"}
    assert set(batch) == keys
    assert len(batch["points"]) == 2 and all(p.shape == (4096, 4) and p.dtype == torch.float32 for p in batch["points"])
    for boxes, labels in zip(batch["boxes"], batch["labels"]):
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 7 and labels.dtype == torch.int64
        assert len(boxes) == len(labels) and len(labels) > 0 and set(labels.tolist()) <= {1, 2, 3}
    assert all(isinstance(c, KittiCalibration) for c in batch["calib"])
    assert batch["rotation"].shape == (2,) and batch["rotation"].dtype == torch.float32
    assert batch["image_shape"] == [(375, 1242), (375, 1242)]
    val = list(dm.val_dataloader())
    val_ids = [fid for b in val for fid in b["frame_id"]]
    assert val_ids == (root / "ImageSets/val.txt").read_text().split()
    first = val[0]
    annos = first["annos"][0]
    assert set(annos) >= {"name", "bbox", "dimensions", "location", "rotation_y", "alpha", "truncated", "occluded"}
    raw = read_label(root / "training/label_2" / f"{first['frame_id'][0]}.txt")
    np.testing.assert_array_equal(annos["location"], raw["location"])  # raw camera-frame labels, unrotated
    assert float(first["rotation"].abs().sum()) == 0.0
    # Val points are in the camera view and the range; labels are 1-based class indices of the label names.
    points = first["points"][0].numpy()
    assert (points[:, 0] >= 0).all() and (points[:, 0] <= 70.4).all() and (np.abs(points[:, 1]) <= 40).all()
    names = raw["name"][np.isin(raw["name"], ["Car", "Pedestrian", "Cyclist"])]
    counts = np.bincount(first["labels"][0].numpy(), minlength=4)[1:]
    assert counts.tolist() == [int((names == c).sum()) for c in ("Car", "Pedestrian", "Cyclist")]


def test_augmentation_functions_keep_points_in_their_boxes() -> None:
    rng = np.random.default_rng(0)
    boxes = np.array([[10.0, 2.0, -0.9, 3.9, 1.6, 1.5, 0.4], [25.0, -6.0, -0.8, 0.8, 0.6, 1.7, -2.0]])
    points = np.c_[rng.uniform([5, -10, -2], [30, 6, 0], size=(5000, 3)), rng.random(5000)].astype(np.float32)
    before = points_in_boxes(points, boxes)
    assert before.sum() > 20
    p, b = rotate_about_z(points, boxes, 2.5)
    assert not np.allclose(p[:, :3], points[:, :3]) and np.allclose(b[:, 6], [2.9, 0.5])
    assert np.abs(points_in_boxes(p, b, margin=1e-4).astype(int) - before).sum() <= 2  # float32 boundary cases
    flips = [random_flip_x(points, boxes, np.random.default_rng(seed)) for seed in range(8)]
    assert {f[2] for f in flips} == {True, False}
    p, b, _ = next(f for f in flips if f[2])
    np.testing.assert_array_equal(p[:, 1], -points[:, 1])
    p, b = global_scaling(p, b, 1.05)
    assert np.abs(points_in_boxes(p, b, margin=1e-4).astype(int) - before).sum() <= 2
    sampled = sample_points(points, 1000, rng)
    assert sampled.shape == (1000, 4) and len({tuple(r) for r in sampled.tolist()}) == 1000  # without replacement
    padded = sample_points(points[:300], 1000, rng)
    assert padded.shape == (1000, 4) and len({tuple(r) for r in padded.tolist()}) == 300  # every point kept


def test_training_augmentation_keeps_points_inside_transformed_boxes(root: Path) -> None:
    dm = _module(root, point_cloud_range=WIDE, num_points=None, gt_sampling={}, fov_only=True)
    dataset = dm.datasets["train"]
    moved = 0
    for index in range(len(dataset)):
        raw = dataset.load(index)
        keep = np.isin(raw["names"], dataset.classes)
        raw_boxes, raw_points = raw["boxes"][keep], raw["points"]
        before = points_in_boxes(raw_points, raw_boxes).sum(axis=0)
        loose = points_in_boxes(raw_points, raw_boxes, margin=0.03).sum(axis=0)
        item = dataset[(3, index)]
        boxes, points = item["boxes"].numpy().astype(np.float64), item["points"].numpy()
        assert len(points) == len(raw_points) and len(boxes) == len(raw_boxes)
        after = points_in_boxes(points, boxes, margin=0.01).sum(axis=0)
        assert ((after >= before) & (after <= loose)).all()
        moved += int(not np.allclose(boxes, raw_boxes, atol=1e-3))
        # Sizes scale by one factor in [0.95, 1.05] for the whole scene.
        ratio = boxes[:, 3:6] / raw_boxes[:, 3:6]
        if len(ratio):
            assert np.allclose(ratio, ratio.flat[0], atol=1e-5) and 0.95 - 1e-6 <= ratio.flat[0] <= 1.05 + 1e-6
    assert moved >= len(dataset) - 1


def test_gt_sampling_adds_objects_without_overlap(root: Path) -> None:
    targets = {"Car": 25, "Pedestrian": 12, "Cyclist": 10}
    dm = _module(root, gt_sampling=targets, num_points=None, flip_x=False, global_rotation=None, global_scaling=None)
    database = dm.database
    assert isinstance(database, GTDatabase) and database.count("Car") > 10
    for k in range(len(database)):
        assert points_in_boxes(database.object_points(k), database.boxes[k][None]).all()
        assert len(database.object_points(k)) >= 5
    dataset = dm.datasets["train"]
    added = 0
    for index in range(len(dataset)):
        raw = dataset.load(index)
        item = dataset[(0, index)]
        boxes = item["boxes"].numpy().astype(np.float64)
        overlap = bev_boxes_overlap(boxes, boxes)
        assert not (overlap & ~np.eye(len(boxes), dtype=bool)).any()
        num_raw = int(np.isin(raw["names"], dataset.classes).sum())
        assert len(boxes) >= num_raw
        raw_counts = [int((raw["names"] == c).sum()) for c in dataset.classes]
        counts = np.bincount(item["labels"].numpy(), minlength=4)[1:]
        assert (counts <= np.maximum([25, 12, 10], raw_counts)).all()  # filled up to the targets, never beyond
        added += len(boxes) - num_raw
        inside = points_in_boxes(item["points"].numpy(), boxes).sum(axis=0)
        assert (inside[num_raw:] >= 5).all()  # pasted objects bring their points
    assert added > 0


def test_test_rotation_is_consistent_and_reproducible(root: Path) -> None:
    plain = _module(root, stage="validate", num_points=2048).datasets["val"]
    rotated = _module(root, stage="validate", num_points=2048, test_rotation="random").datasets["val"]
    again = _module(root, stage="validate", num_points=2048, test_rotation="random").datasets["val"]
    angles = []
    for index in range(len(plain)):
        a, b, c = plain[index], rotated[index], again[index]
        angle = b["rotation"]
        assert -math.pi <= angle <= math.pi and a["rotation"] == 0.0 and c["rotation"] == angle
        angles.append(angle)
        points, boxes = rotate_about_z(a["points"].numpy(), a["boxes"].numpy(), angle)
        np.testing.assert_allclose(b["points"].numpy(), points, atol=1e-4)
        np.testing.assert_allclose(b["boxes"].numpy()[:, :6], boxes[:, :6], atol=1e-4)
        assert np.allclose(np.cos(b["boxes"].numpy()[:, 6] - boxes[:, 6]), 1.0, atol=1e-6)
        assert torch.equal(b["points"], c["points"]) and torch.equal(b["labels"], a["labels"])
        np.testing.assert_array_equal(b["annos"]["location"], a["annos"]["location"])  # annos stay unrotated
        inside_a = points_in_boxes(a["points"].numpy(), a["boxes"].numpy()).sum(0)
        inside_b = points_in_boxes(b["points"].numpy(), b["boxes"].numpy(), margin=1e-3).sum(0)
        assert (inside_b >= inside_a).all()
    assert len(set(angles)) == len(angles)


def test_training_randomness_is_a_function_of_epoch_and_index(root: Path) -> None:
    dataset = _module(root, num_points=2048).datasets["train"]
    first, second, other_epoch = dataset[(2, 1)], dataset[(2, 1)], dataset[(3, 1)]
    assert torch.equal(first["points"], second["points"]) and torch.equal(first["boxes"], second["boxes"])
    assert not torch.equal(first["points"], other_epoch["points"])
    dm = _module(root, num_points=2048)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(4)
    batch_a = next(iter(loader))
    loader.sampler.set_epoch(4)
    batch_b = next(iter(loader))
    assert batch_a["frame_id"] == batch_b["frame_id"] and torch.equal(batch_a["points"][0], batch_b["points"][0])


def test_synthetic_root_none_writes_once_and_reads_with_the_same_loader(tmp_path: Path) -> None:
    options = {"num_train": 2, "num_test": 1, "azimuth_steps": 128}
    dm = KITTIObjectDataModule(
        root=None, synthetic_dir=str(tmp_path / "syn"), synthetic_options=options, num_workers=0, batch_size=1
    )
    dm.prepare_data()
    assert (tmp_path / "syn" / README_NAME).is_file()
    stamp = (tmp_path / "syn/training/velodyne/000000.bin").stat().st_mtime_ns
    dm.prepare_data()  # reused, not rewritten
    assert (tmp_path / "syn/training/velodyne/000000.bin").stat().st_mtime_ns == stamp
    dm.setup("fit")
    assert len(next(iter(dm.train_dataloader()))["points"]) == 1
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["boxes"][0].shape == (0, 7) and len(batch["annos"][0]["name"]) == 0  # testing/ has no labels


def test_missing_root_lists_what_was_looked_for(tmp_path: Path) -> None:
    dm = KITTIObjectDataModule(root=str(tmp_path / "nowhere"), num_workers=0)
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "ImageSets" in message and "train.txt" in message and "velodyne" in message and "does not exist" in message


def test_missing_and_malformed_frame_files(tmp_path: Path, root: Path) -> None:
    copy = tmp_path / "kitti"
    shutil.copytree(root, copy)
    frame = (copy / "ImageSets/train.txt").read_text().split()[0]
    (copy / "training/calib" / f"{frame}.txt").unlink()
    with pytest.raises(FileNotFoundError, match=rf"1 files .*calib/{frame}\.txt"):
        _module(copy, gt_sampling={})
    shutil.copy(root / "training/calib" / f"{frame}.txt", copy / "training/calib" / f"{frame}.txt")
    velodyne = copy / "training/velodyne" / f"{frame}.bin"
    velodyne.write_bytes(velodyne.read_bytes()[:-3])
    dataset = _module(copy, gt_sampling={}).datasets["train"]
    with pytest.raises(KittiObjectFormatError, match=str(velodyne)):
        dataset[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": ()}, "classes"),
        ({"classes": ("Car", "DontCare")}, "DontCare"),
        ({"point_cloud_range": (0, 0, 0, -1, 1, 1)}, "point_cloud_range"),
        ({"num_points": 0}, "num_points"),
        ({"gt_sampling": {"Truck": 5}}, "gt_sampling"),
        ({"global_scaling": (1.1, 0.9)}, "global_scaling"),
        ({"test_rotation": "sometimes"}, "test_rotation"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KITTIObjectDataModule(**kwargs)
