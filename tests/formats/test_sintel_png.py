"""MPI Sintel RGB disparity PNG: the R*4 + G/2^6 + B/2^14 decoding on PNGs written independently with Pillow,
exact round trips on the 2^-14 grid, range checks, and SintelDisparityFormatError for PNGs of the wrong kind."""

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
    SintelDisparityFormatError,
    read_sintel_disparity,
    write_sintel_disparity,
)

shapes = st.tuples(st.integers(1, 8), st.integers(1, 8))


@settings(max_examples=50, deadline=None)
@given(rgb=shapes.flatmap(lambda s: hnp.arrays(np.uint8, (*s, 3))))
def test_decodes_pillow_written_rgb_with_the_published_formula(rgb: np.ndarray) -> None:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    expected = r * 4 + g / 2**6 + b / 2**14
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame_0001.png"
        Image.fromarray(rgb).save(path)
        disp = read_sintel_disparity(path)
    assert disp.dtype == np.float32 and disp.shape == rgb.shape[:2]
    np.testing.assert_array_equal(disp.astype(np.float64), expected)  # exact: 24-bit fixed point fits float32


@settings(max_examples=50, deadline=None)
@given(codes=hnp.arrays(np.int64, shapes, elements=st.integers(0, 2**24 - 1)))
def test_round_trip_on_the_grid_is_exact(codes: np.ndarray) -> None:
    disp = (codes / 2**14).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deep" / "frame_0001.png"
        write_sintel_disparity(path, disp)
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
        back = read_sintel_disparity(path)
    np.testing.assert_array_equal(back, disp)
    np.testing.assert_array_equal(rgb[..., 0] * 2**16 + rgb[..., 1] * 2**8 + rgb[..., 2], codes)


@settings(max_examples=30, deadline=None)
@given(disp=hnp.arrays(np.float64, shapes, elements=st.floats(0, 1023.9999)))
def test_off_grid_values_round_to_the_nearest_step(disp: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.png"
        write_sintel_disparity(path, disp)
        back = read_sintel_disparity(path)
    assert np.abs(back - disp).max() <= 2.0**-15 + 1e-9


@pytest.mark.parametrize(
    ("disp", "match"),
    [
        (np.array([[-0.001, 1.0]]), "outside"),
        (np.array([[1024.0, 1.0]]), "outside"),
        (np.array([[1024.0 - 2.0**-16, 1.0]]), "outside"),  # rounds up to 1024
        (np.array([[np.nan, 1.0]]), "non-finite"),
        (np.ones((2, 2, 3)), "`disp`.*shape"),
        (np.ones((2, 2), dtype=np.uint8), "`disp`.*floating"),
    ],
)
def test_write_rejects_unstorable_values(tmp_path: Path, disp: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_sintel_disparity(tmp_path / "x.png", disp)
    assert not (tmp_path / "x.png").exists()


def test_write_requires_png_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png"):
        write_sintel_disparity(tmp_path / "x.jpg", np.ones((2, 2)))


def _expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(SintelDisparityFormatError) as info:
        read_sintel_disparity(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message


def test_rejects_16bit_grey_png(tmp_path: Path) -> None:
    path = tmp_path / "kitti_style.png"
    assert cv2.imwrite(str(path), np.ones((3, 4), dtype=np.uint16))
    _expect_error(path, "16-bit grey", "8-bit RGB")


def test_rejects_16bit_rgb_png(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), np.ones((3, 4, 3), dtype=np.uint16))
    _expect_error(path, "16-bit RGB")


@pytest.mark.parametrize(
    ("array", "kind"),
    [
        (np.zeros((3, 4), dtype=np.uint8), "8-bit grey"),
        (np.zeros((3, 4, 4), dtype=np.uint8), "8-bit RGBA"),
    ],
)
def test_rejects_other_8bit_layouts(tmp_path: Path, array: np.ndarray, kind: str) -> None:
    path = tmp_path / "other.png"
    Image.fromarray(array).save(path)
    _expect_error(path, kind)


def test_rejects_palette_png(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    Image.fromarray(np.zeros((3, 4, 3), dtype=np.uint8)).convert("P").save(path)
    _expect_error(path, "palette")


def test_rejects_non_png_and_truncated(tmp_path: Path) -> None:
    jpeg = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
    _expect_error(jpeg, "not a PNG")
    good = tmp_path / "good.png"
    write_sintel_disparity(good, np.random.default_rng(1).uniform(0, 300, (64, 64)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    _expect_error(cut, "could not be decoded")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "frame_0042.png"
    with pytest.raises(FileNotFoundError) as info:
        read_sintel_disparity(path)
    assert path.name in str(info.value)
