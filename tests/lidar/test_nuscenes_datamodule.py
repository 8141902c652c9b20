"""NuScenesDataModule: multi-sweep accumulation, box conversion, class mapping, batches and clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("nuscenes")

from nuscenes.eval.common.utils import quaternion_yaw
from pyquaternion import Quaternion

from lightning_hpml.datamodules.formats.kitti_object import points_in_boxes
from lightning_hpml.datamodules.formats.nuscenes import (
    DETECTION_CLASSES,
    NuScenesFormatError,
    global_boxes_to_lidar,
    lidar_boxes_to_global,
)
from lightning_hpml.datamodules.lidar.nuscenes import NuScenesDataModule
from lightning_hpml.datamodules.synthetic.nuscenes_writer import write_nuscenes

OPTIONS = {"num_scenes": 2, "keyframes_per_scene": 4, "sweeps_per_keyframe": 2, "azimuth_steps": 512}


@pytest.fixture(scope="module")
def exact_root(tmp_path_factory):
    """A tree without range noise: points lie exactly on the surfaces."""
    return write_nuscenes(tmp_path_factory.mktemp("nus") / "exact", range_noise=0.0, seed=1, **OPTIONS)


@pytest.fixture(scope="module")
def datamodule(exact_root):
    dm = NuScenesDataModule(root=str(exact_root), train_split="synthetic_train", val_split="synthetic_val",
                            num_workers=0, batch_size=2)  # fmt: skip
    dm.setup("fit")
    return dm


def _surface_distance(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Signed distance of points (near the box) to its surface: max over axes of |local| - half size."""
    offset = points[:, :3] - box[:3]
    cos, sin = math.cos(box[6]), math.sin(box[6])
    local = np.stack([offset[:, 0] * cos + offset[:, 1] * sin, -offset[:, 0] * sin + offset[:, 1] * cos, offset[:, 2]])
    excess = np.abs(local.T) - box[3:6] / 2
    outside = np.linalg.norm(np.maximum(excess, 0.0), axis=1)
    return np.where(outside > 0, outside, excess.max(axis=1))


def test_sweeps_of_a_static_object_coincide_in_the_keyframe_frame(datamodule):
    dataset = datamodule.datasets["val"]
    nusc = datamodule.nusc
    index = len(dataset) - 1  # the last keyframe has 9 older scans
    info = dataset.infos[index]
    assert len(info["sweeps"]) == 9
    points = dataset.load_points(index)
    # Back to the global frame with the keyframe pose only: a wrong sweep transform would misplace whole scans.
    to_global = info["ego_to_global"] @ info["lidar_to_ego"]
    world = points[:, :3].astype(np.float64) @ to_global[:3, :3].T + to_global[:3, 3]
    static = ("vehicle.trailer", "vehicle.construction", "movable_object.barrier")
    checked = 0
    for m, category in enumerate(info["categories"]):
        if category not in static:
            continue
        ann = nusc.get("sample_annotation", info["annotation_tokens"][m])
        w, length, h = ann["size"]
        box = np.array([*ann["translation"], length, w, h, quaternion_yaw(Quaternion(ann["rotation"]))])
        near = points_in_boxes(world, box[None], margin=0.1)[:, 0] & (world[:, 2] > 0.03)  # not the road
        lags = np.unique(points[near, 4])
        if len(lags) < 4:
            continue
        for lag in lags:
            on_object = world[near & (points[:, 4] == lag)]
            # Every scan's points lie on the static object's surface to 1 cm (exact geometry, no range noise).
            assert np.abs(_surface_distance(on_object, box)).max() < 0.01, (category, lag)
        checked += 1
    assert checked >= 2


def test_time_lag_channel(datamodule):
    dataset = datamodule.datasets["val"]
    nusc = datamodule.nusc
    info = dataset.infos[2]
    points = dataset.load_points(2)
    key = nusc.get("sample_data", nusc.get("sample", info["sample_token"])["data"]["LIDAR_TOP"])
    expected, sd = [0.0], key
    while sd["prev"]:
        sd = nusc.get("sample_data", sd["prev"])
        expected.append((key["timestamp"] - sd["timestamp"]) * 1e-6)
    np.testing.assert_allclose(np.unique(points[:, 4]), sorted(expected), atol=1e-6)
    assert np.isclose(max(expected), 1.0) and len(expected) == 7  # keyframe + 6 older scans at 1/6 s spacing
    keyframe_points = np.fromfile(datamodule.data_root / info["lidar_path"], dtype=np.float32).reshape(-1, 5)
    assert (points[:, 4] == 0).sum() == len(keyframe_points)
    np.testing.assert_array_equal(points[points[:, 4] == 0, :4], keyframe_points[:, :4])


def test_box_conversion_matches_points_and_the_devkit(datamodule):
    dataset = datamodule.datasets["train"]
    nusc = datamodule.nusc
    for info in dataset.infos:
        boxes = info["boxes"]
        keyframe = np.fromfile(datamodule.data_root / info["lidar_path"], dtype=np.float32).reshape(-1, 5)
        inside = points_in_boxes(keyframe, boxes, margin=0.05).sum(axis=0)
        counted = info["num_lidar_pts"] >= 10
        assert counted.sum() >= 5
        # An object's points (plus a few road points under it) fall inside its converted box; the 7-DoF LiDAR box
        # drops the sensor's ~0.6 degree tilt, which moves the far edges of a long box by a centimetre or two.
        assert np.all(inside[counted] >= 0.98 * info["num_lidar_pts"][counted])
        assert np.all(inside[counted] <= 1.2 * info["num_lidar_pts"][counted] + 20)
        _, devkit_boxes, _ = nusc.get_sample_data(nusc.get("sample", info["sample_token"])["data"]["LIDAR_TOP"])
        by_token = {b.token: b for b in devkit_boxes}
        for m, token in enumerate(info["annotation_tokens"]):
            ref = by_token[token]
            np.testing.assert_allclose(boxes[m, :3], ref.center, atol=1e-6)
            np.testing.assert_allclose(boxes[m, 3:6], ref.wlh[[1, 0, 2]], atol=1e-9)  # l, w, h from w, l, h
            assert abs(math.remainder(boxes[m, 6] - quaternion_yaw(ref.orientation), 2 * math.pi)) < 1e-6
    # Round trip global -> LiDAR -> global.
    transform = info["ego_to_global"] @ info["lidar_to_ego"]
    translation, size, rotation = lidar_boxes_to_global(boxes, transform)
    np.testing.assert_allclose(global_boxes_to_lidar(translation, size, rotation, transform), boxes, atol=1e-9)


def test_class_mapping_and_filters(datamodule):
    dataset = datamodule.datasets["val"]
    item = dataset[0]
    info = dataset.infos[0]
    keep = (info["num_lidar_pts"] >= 1) & np.isin(info["names"], DETECTION_CLASSES)
    names = [DETECTION_CLASSES[i - 1] for i in item["labels"].tolist()]
    assert sorted(names) == sorted(info["names"][keep].tolist())
    ignored = {"movable_object.debris", "human.pedestrian.stroller", "vehicle.emergency.police"}
    assert all(n == "ignore" for n, c in zip(info["names"], info["categories"]) if c in ignored)
    assert (info["num_lidar_pts"] == 0).any()  # some annotations have no points and are dropped
    assert item["boxes"].shape == (int(keep.sum()), 7) and item["velocity"].shape == (int(keep.sum()), 2)
    car_only = NuScenesDataModule(root=str(dataset.root), train_split="synthetic_train", val_split="synthetic_val",
                                  classes=("pedestrian", "car"), num_workers=0)  # fmt: skip
    car_only.setup("validate")
    labels = car_only.datasets["val"][0]["labels"]
    assert set(labels.tolist()) <= {1, 2} and (labels == 2).sum() == sum(n == "car" for n in names)


def test_training_batches_and_augmentation(datamodule):
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"points", "boxes", "labels", "velocity", "frame_id", "sample_token", "calib", "rotation"}
    assert len(batch["points"]) == 2 and batch["points"][0].shape[1] == 5 and batch["rotation"].shape == (2,)
    assert batch["frame_id"] == batch["sample_token"]
    assert batch["calib"][0]["lidar_to_ego"].shape == (4, 4)
    dataset = datamodule.datasets["train"]
    plain = datamodule.build_dataset("val")
    for epoch in range(3):  # augmentation keeps the points of an object inside its box
        item = dataset[(epoch, 3)]
        points, boxes = item["points"].numpy(), item["boxes"].numpy()
        assert points[:, 4].max() > 0.9  # time lag untouched by scaling
        inside = points_in_boxes(points, boxes, margin=0.1).sum(axis=0)
        assert (inside > 20).sum() >= 5
    assert torch.equal(dataset[(1, 3)]["boxes"], dataset[(1, 3)]["boxes"])  # a function of (seed, epoch, index)
    assert not torch.equal(dataset[(0, 3)]["boxes"], dataset[(1, 3)]["boxes"])
    assert torch.equal(plain[0]["boxes"], plain[0]["boxes"]) and plain[0]["rotation"] == 0.0
    fixed = NuScenesDataModule(root=str(dataset.root), train_split="synthetic_train", val_split="synthetic_val",
                               num_points=4096, test_rotation="random", num_workers=0)  # fmt: skip
    fixed.setup("validate")
    first, second = fixed.datasets["val"][1], fixed.datasets["val"][1]
    assert first["points"].shape == (4096, 5) and torch.equal(first["points"], second["points"])
    assert first["rotation"] != 0.0 and first["rotation"] == second["rotation"]


def test_synthetic_default_root(tmp_path):
    dm = NuScenesDataModule(root=None, synthetic_dir=str(tmp_path / "syn"), max_sweeps=3, num_workers=0,
                            synthetic_options={"azimuth_steps": 256, "keyframes_per_scene": 2})  # fmt: skip
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        dm.setup("fit")
    dm.prepare_data()
    dm.prepare_data()  # reused
    dm.setup("fit")
    assert dm.splits["train"] == "synthetic_train" and len(dm.datasets["val"]) == 2
    assert len(dm.datasets["val"].infos[1]["sweeps"]) == 2


def test_clear_errors(tmp_path, exact_root):
    with pytest.raises(FileNotFoundError, match=r"sample_annotation\.json.*does not exist.*samples/LIDAR_TOP"):
        NuScenesDataModule(root=str(tmp_path / "nowhere"), num_workers=0).setup("fit")
    with pytest.raises(ValueError, match="mini_train"):  # the devkit's mini split names scenes absent here
        NuScenesDataModule(root=str(exact_root), num_workers=0).setup("fit")
    with pytest.raises(ValueError, match="classes"):
        NuScenesDataModule(classes=("Car",))
    broken = tmp_path / "broken"
    write_nuscenes(broken, num_scenes=2, keyframes_per_scene=1, azimuth_steps=64)
    (broken / "v1.0-mini" / "sample.json").write_text('[{"token": "x"', encoding="utf-8")
    with pytest.raises(NuScenesFormatError, match=r"sample\.json"):
        NuScenesDataModule(root=str(broken), train_split="synthetic_train", num_workers=0).setup("fit")
    missing = tmp_path / "missing"
    write_nuscenes(missing, num_scenes=2, keyframes_per_scene=1, azimuth_steps=64)
    next((missing / "samples" / "LIDAR_TOP").iterdir()).unlink()
    with pytest.raises(FileNotFoundError, match=r"LiDAR scans .* missing.*\.pcd\.bin"):
        NuScenesDataModule(root=str(missing), train_split="synthetic_train", val_split="synthetic_val",
                           num_workers=0).setup("fit")  # fmt: skip
    splits = json.loads((missing / "v1.0-mini" / "splits.json").read_text())
    assert "synthetic_val" in splits
    with pytest.raises(ValueError, match="nope"):
        NuScenesDataModule(root=str(missing), train_split="nope", num_workers=0).setup("fit")
