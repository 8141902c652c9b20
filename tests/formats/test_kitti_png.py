"""KITTI 16-bit disparity PNG: exact round trips on the 1/256 grid, decoding of PNGs written independently with
OpenCV, the writer's range checks, and KittiDisparityFormatError for PNGs of the wrong kind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from lightning_hpml.datamodules.formats import (
    KITTI_MAX_DISPARITY,
    KittiDisparityFormatError,
    read_kitti_disparity,
    write_kitti_disparity,
)

shapes = st.tuples(st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=50, deadline=None)
@given(codes=hnp.arrays(np.uint16, shapes))
def test_reads_png_written_by_opencv(codes: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "000000_10.png"
        assert cv2.imwrite(str(path), codes)
        disp, valid = read_kitti_disparity(path)
    assert disp.dtype == np.float32 and valid.dtype == np.bool_
    np.testing.assert_array_equal(valid, codes > 0)
    np.testing.assert_array_equal(disp, codes.astype(np.float64) / 256.0)
    assert disp.flags.writeable


@settings(max_examples=50, deadline=None)
@given(codes=hnp.arrays(np.uint16, shapes), use_mask=st.booleans())
def test_round_trip_on_the_grid_is_exact(codes: np.ndarray, use_mask: bool) -> None:
    disp = codes.astype(np.float32) / 256
    valid = codes > 0
    # Invalid pixels either carry a value that `valid` overrides, or are non-finite and `valid` is left out.
    disp[~valid] = -7.0 if use_mask else np.nan
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a" / "b.png"
        write_kitti_disparity(path, disp, valid if use_mask else None)
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        back, back_valid = read_kitti_disparity(path)
    np.testing.assert_array_equal(stored, codes)
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back[valid], disp[valid])
    assert (back[~valid] == 0).all()


@settings(max_examples=40, deadline=None)
@given(disp=hnp.arrays(np.float64, shapes, elements=st.floats(1 / 256, KITTI_MAX_DISPARITY)))
def test_round_trip_error_is_at_most_half_a_step(disp: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.png"
        write_kitti_disparity(path, disp)
        back, valid = read_kitti_disparity(path)
    assert valid.all()
    assert np.abs(back - disp).max() <= 1 / 512 + 1e-6


def test_non_finite_without_mask_is_invalid(tmp_path: Path) -> None:
    disp = np.array([[1.5, np.nan], [np.inf, 2.0]], dtype=np.float32)
    write_kitti_disparity(tmp_path / "d.png", disp)
    back, valid = read_kitti_disparity(tmp_path / "d.png")
    np.testing.assert_array_equal(valid, [[True, False], [False, True]])
    np.testing.assert_array_equal(back, [[1.5, 0.0], [0.0, 2.0]])


@pytest.mark.parametrize(
    ("disp", "valid", "match"),
    [
        (np.array([[-0.5, 1.0]]), None, "outside"),
        (np.array([[256.0, 1.0]]), None, "outside"),
        (np.array([[1 / 1024, 1.0]]), None, "below 1/512"),
        (np.array([[0.0, 1.0]]), None, "below 1/512"),
        (np.array([[np.nan, 1.0]]), np.array([[True, True]]), "non-finite"),
        (np.array([[1.0, 1.0]]), np.array([[1, 1]]), "`valid`.*bool"),
        (np.array([[1.0, 1.0]]), np.array([[True], [True]]), "`valid`.*shape"),
        (np.ones((2, 2, 3)), None, "`disp`.*shape"),
        (np.ones((2, 2), dtype=np.uint16), None, "`disp`.*floating"),
    ],
)
def test_write_rejects_unstorable_values(
    tmp_path: Path, disp: np.ndarray, valid: np.ndarray | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        write_kitti_disparity(tmp_path / "x.png", disp, valid)
    assert not (tmp_path / "x.png").exists()


def test_tiny_or_negative_values_are_fine_when_marked_invalid(tmp_path: Path) -> None:
    disp = np.array([[0.0, -3.0, 1e-5, 4.25]])
    write_kitti_disparity(tmp_path / "x.png", disp, disp > 1)
    back, valid = read_kitti_disparity(tmp_path / "x.png")
    np.testing.assert_array_equal(valid, [[False, False, False, True]])
    np.testing.assert_array_equal(back, [[0, 0, 0, 4.25]])


def test_write_requires_png_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png"):
        write_kitti_disparity(tmp_path / "x.tif", np.ones((2, 2)))


def _expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(KittiDisparityFormatError) as info:
        read_kitti_disparity(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message


def test_rejects_8bit_grey_png(tmp_path: Path) -> None:
    path = tmp_path / "eight_bit.png"
    Image.fromarray(np.full((4, 5), 7, dtype=np.uint8)).save(path)
    _expect_error(path, "8-bit grey", "16-bit")


def test_rejects_rgb_png(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(path)
    _expect_error(path, "8-bit RGB")


def test_rejects_16bit_rgb_png(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), np.ones((4, 5, 3), dtype=np.uint16))
    _expect_error(path, "16-bit RGB")


@pytest.mark.parametrize("content", [b"", b"not a png at all", b"Pf\n2 1\n-1.0\n" + bytes(8)])
def test_rejects_non_png(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    _expect_error(path, "not a PNG")


def test_rejects_tiff_named_png(tmp_path: Path) -> None:
    # OpenCV would decode a 16-bit TIFF fine; the signature check must refuse it.
    tif = tmp_path / "x.tif"
    assert cv2.imwrite(str(tif), np.ones((4, 5), dtype=np.uint16))
    path = tmp_path / "tiff_inside.png"
    path.write_bytes(tif.read_bytes())
    _expect_error(path, "not a PNG")


def test_rejects_truncated_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    write_kitti_disparity(good, np.random.default_rng(0).uniform(1, 200, (64, 64)))
    path = tmp_path / "truncated.png"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect_error(path, "could not be decoded")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "000007_10.png"
    with pytest.raises(FileNotFoundError) as info:
        read_kitti_disparity(path)
    assert path.name in str(info.value)
