"""MVSNet camera/pair files and DTU-style accuracy/completeness on shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_hpml.datamodules.formats.mvs_cameras import (
    MVSCamera,
    MVSCameraFormatError,
    crop_intrinsics,
    read_cam_txt,
    read_pair_txt,
    scale_intrinsics,
    write_cam_txt,
    write_pair_txt,
)
from lightning_hpml.metrics.point_cloud import dtu_accuracy_completeness

DTU_CAM = """extrinsic
0.970263 0.00747983 0.241939 -191.02
-0.0147429 0.999493 0.0282234 3.28832
-0.241605 -0.030951 0.969881 22.5401
0.0 0.0 0.0 1.0

intrinsic
361.54125 0.0 82.900625
0.0 360.3975 66.383875
0.0 0.0 1.0

425.0 2.5
"""


def test_dtu_camera_file_reads_and_round_trips(tmp_path):
    (tmp_path / "00000000_cam.txt").write_text(DTU_CAM)
    cam = read_cam_txt(tmp_path / "00000000_cam.txt")
    assert cam.extrinsic.shape == (4, 4) and cam.extrinsic[0, 3] == pytest.approx(-191.02)
    assert cam.intrinsic[0, 0] == pytest.approx(361.54125) and cam.depth_interval == 2.5
    assert cam.depth_range() == pytest.approx((425.0, 425.0 + 1.06 * 2.5 * 191))
    write_cam_txt(tmp_path / "again.txt", cam)
    again = read_cam_txt(tmp_path / "again.txt")
    np.testing.assert_allclose(again.extrinsic, cam.extrinsic)
    np.testing.assert_allclose(again.intrinsic, cam.intrinsic)
    assert (again.depth_min, again.depth_interval) == (425.0, 2.5)
    tt = MVSCamera(np.eye(4), np.eye(3), 0.5, depth_max=12.0)
    write_cam_txt(tmp_path / "tt.txt", tt)
    assert read_cam_txt(tmp_path / "tt.txt", second_field="max").depth_range() == (0.5, 12.0)


@pytest.mark.parametrize(
    "broken, message",
    [
        (DTU_CAM.replace("extrinsic", "extrinsics"), "first line is 'extrinsics'; expected 'extrinsic'"),
        (DTU_CAM.replace("0.0 0.0 0.0 1.0", "0.0 0.0 1.0"), "line 5 has 3 numbers"),
        (DTU_CAM.replace("intrinsic\n", "intrinsics\n"), "expected 'intrinsic'"),
        (DTU_CAM.replace("425.0 2.5", "425.0"), "depth line has 1 numbers"),
        (DTU_CAM.replace("0.0 0.0 0.0 1.0", "0.0 0.0 0.5 1.0"), "last row"),
    ],
)
def test_malformed_camera_files_name_the_problem(tmp_path, broken, message):
    (tmp_path / "cam.txt").write_text(broken)
    with pytest.raises(MVSCameraFormatError, match=message) as error:
        read_cam_txt(tmp_path / "cam.txt")
    assert str(error.value).startswith(str(tmp_path / "cam.txt"))


def test_pair_file_round_trips_and_rejects_bad_counts(tmp_path):
    pairs = {0: [(10, 2.5), (1, 1.25)], 1: [(0, 3.0)]}
    write_pair_txt(tmp_path / "pair.txt", pairs)
    assert read_pair_txt(tmp_path / "pair.txt") == pairs
    (tmp_path / "bad.txt").write_text("2\n0\n2 10 2.5 1 1.25\n1\n3 0 3.0\n")
    with pytest.raises(MVSCameraFormatError, match="lines 4-5"):
        read_pair_txt(tmp_path / "bad.txt")
    (tmp_path / "short.txt").write_text("3\n0\n1 1 1.0\n")
    with pytest.raises(MVSCameraFormatError, match="expected 6 for 3 views"):
        read_pair_txt(tmp_path / "short.txt")


def test_intrinsics_follow_resize_and_crop():
    k = np.array([[400.0, 0, 320], [0, 400, 256], [0, 0, 1]])
    point = np.array([1.0, -0.5, 4.0])
    pixel = (k @ point)[:2] / point[2]
    resized = scale_intrinsics(k, 0.5, 0.25)
    np.testing.assert_allclose((resized @ point)[:2] / point[2], pixel * [0.5, 0.25])
    cropped = crop_intrinsics(k, 32, 16)
    np.testing.assert_allclose((cropped @ point)[:2] / point[2], pixel - [32, 16])
    assert resized[2].tolist() == [0, 0, 1]


def _sphere(radius: float, n: int = 40000) -> np.ndarray:
    golden = np.pi * (3 - np.sqrt(5))
    i = np.arange(n)
    z = 1 - 2 * (i + 0.5) / n
    r = np.sqrt(1 - z * z)
    return radius * np.stack([r * np.cos(golden * i), r * np.sin(golden * i), z], axis=1)


def test_sphere_against_a_larger_sphere_gives_the_radial_offset():
    gt, recon = _sphere(100.0), _sphere(100.5)
    result = dtu_accuracy_completeness(recon, gt, spacing=None, max_dist=20.0)
    assert result["accuracy"] == pytest.approx(0.5, abs=0.02)  # point spacing ~1.8 mm adds a little
    assert result["completeness"] == pytest.approx(0.5, abs=0.02)
    assert result["overall"] == pytest.approx(0.5, abs=0.02)


def test_half_plane_reconstruction_has_exact_accuracy_and_completeness():
    grid = np.stack(np.meshgrid(np.arange(0, 10.01, 0.1), np.arange(0, 10.01, 0.1), indexing="ij"), -1).reshape(-1, 2)
    gt = np.column_stack([grid, np.zeros(len(grid))])
    half = grid[grid[:, 0] <= 5.0 + 1e-9]
    recon = np.column_stack([half, np.full(len(half), 0.3)])
    result = dtu_accuracy_completeness(recon, gt, spacing=None, max_dist=4.0)
    assert result["accuracy"] == pytest.approx(0.3)
    x = gt[:, 0]
    distance = np.where(x <= 5.0 + 1e-9, 0.3, np.hypot(x - 5.0, 0.3))  # nearest reconstructed point: the rim
    kept = distance[distance < 4.0]
    assert result["completeness"] == pytest.approx(kept.mean(), rel=1e-6)
    assert result["completeness_outlier_fraction"] == pytest.approx(1 - len(kept) / len(gt))
    masked = dtu_accuracy_completeness(recon, gt, spacing=None, max_dist=4.0, gt_valid=x <= 5.0 + 1e-9)
    assert masked["completeness"] == pytest.approx(0.3)  # the unobserved half no longer counts
    with pytest.raises(ValueError, match="one bool per point"):
        dtu_accuracy_completeness(recon, gt, observed=np.ones(3, bool))
