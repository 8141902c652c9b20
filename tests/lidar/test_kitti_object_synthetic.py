"""Synthetic KITTI 3D object tree: exact ray-cast geometry, labels consistent with the points and the image, the
real layout, meaningful occlusion/truncation/alpha, and determinism by seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_hpml.datamodules.formats.kitti_object import (
    bev_boxes_overlap,
    camera_boxes_to_lidar,
    lidar_boxes_to_image_bbox,
    observation_angle,
    points_in_boxes,
    read_calib,
    read_image_set,
    read_label,
    read_velodyne,
    wrap_angle,
)
from lightning_hpml.datamodules.synthetic.kitti_object_writer import kitti_calibration, write_kitti_object
from lightning_hpml.datamodules.synthetic.lidar_scene import (
    SOURCE_GROUND,
    LidarScene,
    LidarSensor,
    occluded_fraction,
    random_lidar_scene,
    scan_scene,
)
from lightning_hpml.datamodules.synthetic.output_tree import README_NAME

TREE = {"num_train": 6, "num_test": 2, "azimuth_steps": 512, "seed": 5}
SENSOR = LidarSensor(azimuth_steps=512)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kitti_object(tmp_path_factory.mktemp("kobj") / "kitti", **TREE)


def test_scan_points_lie_on_the_surfaces_they_came_from() -> None:
    rng = np.random.default_rng(0)
    scene = random_lidar_scene(rng, sensor=SENSOR)
    assert len(scene.boxes) >= 3 and set(scene.names) <= {"Car", "Pedestrian", "Cyclist"}
    overlap = bev_boxes_overlap(scene.boxes, scene.boxes)
    assert not (overlap & ~np.eye(len(scene.boxes), dtype=bool)).any()
    assert (scene.boxes[:, 0] >= 5).all() and (scene.boxes[:, 0] <= 60).all() and (abs(scene.boxes[:, 1]) < 25).all()
    np.testing.assert_allclose(scene.boxes[:, 2] - scene.boxes[:, 5] / 2, -1.73)  # standing on the road
    scan = scan_scene(scene, SENSOR, rng)
    points, source = scan.points, scan.source
    assert points.dtype == np.float32 and points.shape[1] == 4
    assert 0 <= points[:, 3].min() and points[:, 3].max() <= 1
    ground = points[source == SOURCE_GROUND]
    assert len(ground) > 0.5 * len(points) and np.abs(ground[:, 2] + 1.73).max() < 0.06  # 1 cm range noise
    hits = 0
    for k, box in enumerate(scene.boxes):
        own = points[source == k]
        hits += len(own)
        if len(own):  # every point of object k is on box k (within the noise)
            assert points_in_boxes(own, box[None], margin=0.05).all()
            assert not points_in_boxes(own, box[None], margin=-0.06).any()  # on the surface, not inside
        # Conversely, what lies within box k (+5 cm, above the road) is object k.
        near = points_in_boxes(points, box[None], margin=0.05)[:, 0] & (points[:, 2] > -1.73 + 0.05)
        if near.sum() >= 10:
            assert (source[near] == k).mean() > 0.9
    assert hits > 100
    # Reflectance differs by surface: asphalt (without markings) is darker than the objects on average.
    assert np.median(ground[:, 3]) < np.median(points[source >= 0, 3])


def test_occlusion_measures_blocked_sight_lines() -> None:
    boxes = np.array([[10.0, 0.0, -0.95, 3.9, 1.6, 1.56, 0.0], [20.0, 0.0, -0.95, 3.9, 1.6, 1.56, 0.0]])
    scene = LidarScene(boxes, ["Car", "Car"], np.array([0.5, 0.5]), np.zeros((0, 7)), np.zeros(0), -1.73)
    viewpoint = np.array([0.27, 0.0, -0.08])
    rng = np.random.default_rng(0)
    assert occluded_fraction(scene, 0, viewpoint, rng) == 0.0
    assert occluded_fraction(scene, 1, viewpoint, rng) > 0.6  # hidden behind the first car
    scan = scan_scene(scene, LidarSensor(azimuth_steps=2048, range_noise=0.0), rng)
    front = scan.points[scan.source == 0]
    assert (scan.source == 1).sum() < 0.2 * len(front)  # the far car is mostly shadowed in the scan too
    np.testing.assert_allclose(front[np.abs(front[:, 1]) < 0.5, 0].min(), 8.05, atol=1e-3)  # rear face at x = 8.05


def test_layout_and_image_sets(tree: Path) -> None:
    assert (tree / README_NAME).is_file()
    ids = [f"{i:06d}" for i in range(TREE["num_train"])]
    for folder, suffix in (("velodyne", ".bin"), ("label_2", ".txt"), ("calib", ".txt"), ("image_2", ".png")):
        assert sorted(p.name for p in (tree / "training" / folder).iterdir()) == [i + suffix for i in ids]
    assert sorted(p.name for p in (tree / "testing").iterdir()) == ["calib", "image_2", "velodyne"]
    train, val = read_image_set(tree / "ImageSets/train.txt"), read_image_set(tree / "ImageSets/val.txt")
    assert sorted(train + val) == ids and not set(train) & set(val) and train and val
    assert read_image_set(tree / "ImageSets/test.txt") == ["000000", "000001"]
    with Image.open(tree / "training/image_2/000000.png") as image:
        assert image.size == (1242, 375) and image.mode == "RGB"
    assert read_calib(tree / "training/calib/000000.txt").allclose(kitti_calibration(), atol=1e-9)


def test_labels_are_consistent_with_points_image_and_calib(tree: Path) -> None:
    labelled = truncated = occluded_any = dontcare = 0
    for i in range(TREE["num_train"]):
        frame = f"{i:06d}"
        label = read_label(tree / f"training/label_2/{frame}.txt")
        calib = read_calib(tree / f"training/calib/{frame}.txt")
        points = read_velodyne(tree / f"training/velodyne/{frame}.bin")
        care = label["name"] != "DontCare"
        dontcare += int((~care).sum())
        dc = {k: v[~care] for k, v in label.items()}
        assert (dc["occluded"] == -1).all() and (dc["location"] == -1000).all() and (dc["rotation_y"] == -10).all()
        names = label["name"][care]
        assert set(names) <= {"Car", "Pedestrian", "Cyclist"}
        boxes = camera_boxes_to_lidar(
            label["location"][care], label["dimensions"][care], label["rotation_y"][care], calib
        )
        # bbox = projected box clipped to the image (up to the file's 2 decimals).
        np.testing.assert_allclose(
            label["bbox"][care], lidar_boxes_to_image_bbox(boxes, calib, (375, 1242)), atol=0.006
        )
        # alpha = rotation_y - atan2(x, z).
        expected_alpha = observation_angle(label["location"][care], label["rotation_y"][care])
        assert np.abs(wrap_angle(label["alpha"][care] - expected_alpha)).max() <= 0.006
        trunc = label["truncated"][care]
        assert ((trunc >= 0) & (trunc <= 1)).all() and set(label["occluded"][care]) <= {0, 1, 2}
        bbox = label["bbox"][care]
        touches = (bbox[:, :2] <= 0.01).any(axis=1) | (bbox[:, 2] >= 1240.99) | (bbox[:, 3] >= 373.99)
        assert ((trunc > 0.005) <= touches).all()  # only boxes cut by the image border are truncated
        truncated += int((trunc > 0).sum())
        occluded_any += int((label["occluded"][care] > 0).sum())
        labelled += len(boxes)
        # The points inside a label box (+5 cm, above the road) lie on its surface: the labels are the geometry.
        for box in boxes:
            near = points_in_boxes(points, box[None], margin=0.05)[:, 0] & (points[:, 2] > -1.73 + 0.08)
            if near.sum() >= 10:
                interior = points_in_boxes(points[near], box[None], margin=-0.07)[:, 0]
                assert interior.mean() < 0.1
    assert labelled >= 3 * TREE["num_train"] and occluded_any > 0 and truncated > 0 and dontcare > 0


def test_deterministic_by_seed(tmp_path: Path, tree: Path) -> None:
    again = write_kitti_object(tmp_path / "again", **{**TREE, "num_train": 2, "num_test": 0})
    other = write_kitti_object(tmp_path / "other", **{**TREE, "num_train": 2, "num_test": 0, "seed": 6})
    for rel in ("training/velodyne/000001.bin", "training/label_2/000001.txt", "training/image_2/000001.png"):
        assert (again / rel).read_bytes() == (tree / rel).read_bytes()  # frames do not depend on counts
    assert (other / "training/velodyne/000001.bin").read_bytes() != (tree / "training/velodyne/000001.bin").read_bytes()


def test_writer_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_train"):
        write_kitti_object(tmp_path / "a", num_train=1)
    with pytest.raises(ValueError, match="val_fraction"):
        write_kitti_object(tmp_path / "b", val_fraction=1.0)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "precious.txt").write_text("real data")
    with pytest.raises(FileExistsError):
        write_kitti_object(tmp_path / "c", num_train=2, overwrite=True)


def test_generation_speed_is_below_a_second_per_frame() -> None:
    import time

    rng = np.random.default_rng(1)
    from lightning_hpml.datamodules.synthetic.kitti_object_writer import make_kitti_object_frame

    start = time.perf_counter()
    points, _, _, _, _ = make_kitti_object_frame(rng, kitti_calibration(), sensor=LidarSensor(azimuth_steps=1024))
    assert time.perf_counter() - start < 2.0  # ~0.15 s on one core; generous for loaded CI machines
    assert len(points) > 0.8 * 64 * 1024 * 0.8 and math.isfinite(float(points.sum()))
