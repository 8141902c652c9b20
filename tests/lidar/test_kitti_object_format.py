"""KITTI 3D object files: velodyne/label/calib/ImageSets round trips, box conversions against hand-computed
projections, and malformed files raising an error that starts with the path."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from lightning_hpml.datamodules.formats.errors import FormatError
from lightning_hpml.datamodules.formats.kitti_object import (
    LABEL_KEYS,
    KittiObjectFormatError,
    bev_boxes_overlap,
    boxes_to_corners,
    camera_boxes_to_lidar,
    lidar_boxes_to_camera,
    lidar_boxes_to_image_bbox,
    observation_angle,
    points_in_boxes,
    points_in_fov,
    read_calib,
    read_image_set,
    read_label,
    read_velodyne,
    wrap_angle,
    write_calib,
    write_image_set,
    write_label,
    write_velodyne,
)
from lightning_hpml.datamodules.synthetic.kitti_object_writer import kitti_calibration

CALIB = kitti_calibration()

# A real label line shape (KITTI training/label_2/000001.txt style), plus a DontCare line.
LABEL_TEXT = (
    "Truck 0.00 0 -1.57 599.41 156.40 629.75 189.25 2.85 2.63 12.34 0.47 1.49 69.44 -1.56\n"
    "Car 0.00 0 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57\n"
    "Cyclist 0.00 3 -1.65 676.60 163.95 688.98 193.93 1.86 0.60 2.02 4.59 1.32 45.84 -1.55\n"
    "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n"
)


def _angle_close(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    return bool(np.all(np.abs(wrap_angle(np.asarray(a) - np.asarray(b))) <= atol))


def test_velodyne_round_trip(tmp_path: Path) -> None:
    points = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    write_velodyne(tmp_path / "velodyne" / "000000.bin", points)
    assert (tmp_path / "velodyne" / "000000.bin").stat().st_size == 1000 * 16
    back = read_velodyne(tmp_path / "velodyne" / "000000.bin")
    assert back.dtype == np.float32 and np.array_equal(back, points)


def test_label_read_fields_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "000001.txt"
    path.write_text(LABEL_TEXT)
    label = read_label(path)
    assert set(label) == set(LABEL_KEYS)
    assert list(label["name"]) == ["Truck", "Car", "Cyclist", "DontCare"]
    assert label["bbox"].shape == (4, 4) and label["dimensions"].shape == (4, 3) and label["location"].shape == (4, 3)
    assert label["occluded"].dtype == np.int64 and list(label["occluded"]) == [0, 0, 3, -1]
    np.testing.assert_array_equal(label["dimensions"][1], [1.67, 1.87, 3.69])  # h, w, l in file order
    np.testing.assert_array_equal(label["location"][1], [-16.53, 2.39, 58.49])
    assert label["rotation_y"][2] == -1.55 and label["alpha"][0] == -1.57
    write_label(tmp_path / "copy.txt", label)
    assert (tmp_path / "copy.txt").read_text().splitlines()[1] == LABEL_TEXT.splitlines()[1]
    back = read_label(tmp_path / "copy.txt")
    for key in LABEL_KEYS:
        np.testing.assert_array_equal(back[key], label[key])


def test_result_file_with_score_round_trip(tmp_path: Path) -> None:
    label = read_label(_write(tmp_path / "l.txt", LABEL_TEXT))
    label["score"] = np.array([0.91234, 0.5, 0.25, 0.125])
    write_label(tmp_path / "r.txt", label)
    back = read_label(tmp_path / "r.txt")
    assert "score" in back and np.allclose(back["score"], [0.9123, 0.5, 0.25, 0.125])
    assert len((tmp_path / "r.txt").read_text().splitlines()[0].split()) == 16


def test_empty_label_file(tmp_path: Path) -> None:
    label = read_label(_write(tmp_path / "e.txt", ""))
    assert len(label["name"]) == 0 and label["bbox"].shape == (0, 4) and label["location"].shape == (0, 3)
    write_label(tmp_path / "e2.txt", label)
    assert (tmp_path / "e2.txt").read_text() == ""


def test_calib_round_trip_and_transforms(tmp_path: Path) -> None:
    write_calib(tmp_path / "calib.txt", CALIB)
    text = (tmp_path / "calib.txt").read_text()
    assert [line.split(":")[0] for line in text.splitlines()] == [
        "P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo",
    ]  # fmt: skip
    back = read_calib(tmp_path / "calib.txt")
    assert back.allclose(CALIB, atol=1e-12)
    # Hand-computed chain: x_rect = R0 (Tr [x; 1]); pixel = P2 [x_rect; 1].
    x = np.array([[20.0, -3.0, -1.0], [8.0, 4.0, 0.5]])
    rect = (CALIB.R0_rect @ (CALIB.Tr_velo_to_cam[:, :3] @ x.T + CALIB.Tr_velo_to_cam[:, 3:])).T
    np.testing.assert_allclose(back.lidar_to_rect(x), rect, atol=1e-12)
    np.testing.assert_allclose(back.rect_to_lidar(rect), x, atol=1e-9)
    hom = (CALIB.P2 @ np.c_[rect, np.ones(2)].T).T
    uv, depth = back.lidar_to_image(x)
    np.testing.assert_allclose(uv, hom[:, :2] / hom[:, 2:], atol=1e-9)
    np.testing.assert_allclose(depth, rect[:, 2], atol=1e-12)
    # LiDAR x forward is camera z forward; LiDAR y left is camera -x.
    assert rect[0, 2] == pytest.approx(20.0 - 0.27, abs=0.1) and rect[0, 0] == pytest.approx(3.0, abs=0.1)


def test_camera_lidar_box_round_trip() -> None:
    rng = np.random.default_rng(1)
    location = np.c_[rng.uniform(-20, 20, 50), rng.uniform(1.0, 2.5, 50), rng.uniform(3, 70, 50)]
    hwl = np.c_[rng.uniform(1.4, 1.9, 50), rng.uniform(0.5, 1.9, 50), rng.uniform(0.6, 4.5, 50)]
    ry = rng.uniform(-math.pi, math.pi, 50)
    boxes = camera_boxes_to_lidar(location, hwl, ry, CALIB)
    assert boxes.shape == (50, 7)
    np.testing.assert_allclose(boxes[:, 3:6], hwl[:, [2, 1, 0]])  # l, w, h
    assert _angle_close(boxes[:, 6], -(math.pi / 2 + ry), 1e-12)
    # OpenPCDet: centre z = (bottom centre in LiDAR) z + h/2.
    np.testing.assert_allclose(boxes[:, 2], CALIB.rect_to_lidar(location)[:, 2] + hwl[:, 0] / 2, atol=1e-12)
    loc2, hwl2, ry2 = lidar_boxes_to_camera(boxes, CALIB)
    np.testing.assert_allclose(loc2, location, atol=1e-6)
    np.testing.assert_allclose(hwl2, hwl, atol=1e-12)
    assert _angle_close(ry2, ry, 1e-6)


def test_lidar_box_of_known_car() -> None:
    # A car 20 m ahead, 2 m to the left, heading along the road: rotation_y = -pi/2 in camera terms.
    boxes = np.array([[20.0, 2.0, -1.73 + 0.78, 3.9, 1.6, 1.56, 0.0]])
    location, hwl, ry = lidar_boxes_to_camera(boxes, CALIB)
    assert ry[0] == pytest.approx(-math.pi / 2) and list(hwl[0]) == pytest.approx([1.56, 1.6, 3.9])
    assert location[0, 0] == pytest.approx(-2.0, abs=0.1) and location[0, 2] == pytest.approx(19.7, abs=0.2)
    # alpha = ry - atan2(x, z): the car is seen slightly from the left.
    assert observation_angle(location, ry)[0] == pytest.approx(-math.pi / 2 + math.atan2(2.0, 19.7), abs=0.01)


def test_image_bbox_is_the_clipped_extent_of_projected_corners() -> None:
    boxes = np.array([[15.0, 0.5, -1.0, 3.9, 1.6, 1.5, 0.3], [8.0, 7.5, -1.0, 4.0, 1.7, 1.5, 1.2]])
    corners = boxes_to_corners(boxes)
    assert corners.shape == (2, 8, 3)
    # Each box's corners are at distance sqrt((l/2)^2 + (w/2)^2 + (h/2)^2) from its centre.
    radius = np.linalg.norm(boxes[:, 3:6] / 2, axis=1)
    np.testing.assert_allclose(np.linalg.norm(corners - boxes[:, None, :3], axis=2), np.repeat(radius[:, None], 8, 1))
    hom = (CALIB.P2 @ np.c_[CALIB.lidar_to_rect(corners.reshape(-1, 3)), np.ones(16)].T).T
    uv = (hom[:, :2] / hom[:, 2:]).reshape(2, 8, 2)
    expected = np.c_[uv.min(1), uv.max(1)]
    np.testing.assert_allclose(lidar_boxes_to_image_bbox(boxes, CALIB), expected, atol=1e-9)
    clipped = lidar_boxes_to_image_bbox(boxes, CALIB, (375, 1242))
    assert expected[1, 0] < 0 and clipped[1, 0] == 0.0  # the second car leaves the image on the left
    np.testing.assert_allclose(clipped[0], expected[0], atol=1e-9)
    assert np.all(clipped[:, [0, 2]] <= 1241) and np.all(clipped[:, [1, 3]] <= 374)


def test_points_in_fov_boxes_and_overlap() -> None:
    points = np.array([[10.0, 0.0, 0.0], [10.0, 30.0, 0.0], [-5.0, 0.0, 0.0], [30.0, -5.0, -1.0]])
    np.testing.assert_array_equal(points_in_fov(points, CALIB, (375, 1242)), [True, False, False, True])
    box = np.array([[10.0, 0.0, 0.0, 4.0, 2.0, 2.0, math.pi / 2]])  # rotated: 2 m along x, 4 m along y
    inside = points_in_boxes(np.array([[10.9, 0, 0], [11.2, 0, 0], [10, 1.9, 0], [10, 0, 1.1]]), box)
    np.testing.assert_array_equal(inside[:, 0], [True, False, True, False])
    a = np.array([[0.0, 0, 0, 4, 2, 1.5, 0.0]])
    b = np.array([[2.8, 0.0, 0, 4, 2, 1.5, math.pi / 2], [4.1, 0, 0, 4, 2, 1.5, 0.0], [0, 2.05, 0, 4, 2, 1.5, 0]])
    np.testing.assert_array_equal(bev_boxes_overlap(a, b)[0], [True, False, False])
    np.testing.assert_array_equal(bev_boxes_overlap(b, a)[:, 0], [True, False, False])
    assert bev_boxes_overlap(a, b[2:], margin=0.05).all()


def test_image_set_round_trip(tmp_path: Path) -> None:
    write_image_set(tmp_path / "ImageSets" / "train.txt", ["000000", "000003"])
    assert read_image_set(tmp_path / "ImageSets" / "train.txt") == ["000000", "000003"]


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("reader", "content", "needle"),
    [
        (read_velodyne, b"\0" * 17, "not a multiple of 16"),
        (read_velodyne, np.array([[1, 2, np.nan, 0]], np.float32).tobytes(), "NaN"),
        (read_label, "Car 0.00 0 -1.57 599.41 156.40 629.75 189.25 2.85 2.63\n", "line 1 has 10 fields"),
        (read_label, "Car 0.00 0 x 1 2 3 4 1 1 1 0 0 0 0\n", "does not parse"),
        (read_label, "Car 0 0.5 0 1 2 3 4 1 1 1 0 0 0 0\n", "occluded must be an integer"),
        (read_label, LABEL_TEXT.splitlines()[0] + "\n" + LABEL_TEXT.splitlines()[1] + " 0.5\n", "line 2 has 16"),
        (read_calib, "P2: 1 2 3\nR0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 0 0 0 0 0 0 0 0 0 0 0\n", "12 (3x4)"),
        (read_calib, "R0_rect: 1 0 0 0 1 0 0 0 1\n", "missing ['P2', 'Tr_velo_to_cam']"),
        (read_calib, "P2 1 2 3\n", "is not 'KEY: v1 v2 ...'"),
        (read_image_set, "000001\n12\n", "line 2 '12' is not a 6-digit frame id"),
    ],
)
def test_malformed_files_name_the_path(tmp_path: Path, reader, content, needle: str) -> None:
    path = _write(tmp_path / "bad.file", content)
    with pytest.raises(KittiObjectFormatError) as info:
        reader(path)
    assert str(info.value).startswith(str(path)) and needle in str(info.value)
    assert isinstance(info.value, FormatError) and isinstance(info.value, ValueError)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_missing_files_and_bad_writer_input(tmp_path: Path) -> None:
    for reader in (read_velodyne, read_label, read_calib, read_image_set):
        with pytest.raises(FileNotFoundError, match="absent"):
            reader(tmp_path / "absent")
    label = read_label(_write(tmp_path / "l.txt", LABEL_TEXT))
    del label["alpha"]
    with pytest.raises(ValueError, match="lacks the keys"):
        write_label(tmp_path / "out.txt", label)
    with pytest.raises(ValueError, match=r"\(N, C>=3\)"):
        write_velodyne(tmp_path / "v.bin", np.zeros(5))
