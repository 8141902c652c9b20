"""RGB views: lossless PNG round trips, grey/RGBA/palette normalisation to uint8 RGB, and ImageFormatError for
corrupt, truncated or high-bit-depth files."""

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

from lightning_hpml.datamodules.formats import ImageFormatError, read_rgb, write_rgb

rgb_images = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(lambda s: hnp.arrays(np.uint8, (*s, 3)))


@settings(max_examples=40, deadline=None)
@given(rgb=rgb_images, suffix=st.sampled_from([".png", ".bmp", ".ppm"]))
def test_lossless_round_trip(rgb: np.ndarray, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "left" / f"0006{suffix}"
        write_rgb(path, rgb)
        back = read_rgb(path)
        # Independent decoder: OpenCV returns BGR.
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert back.dtype == np.uint8 and back.shape == rgb.shape
    assert back.flags.c_contiguous and back.flags.writeable
    np.testing.assert_array_equal(back, rgb)
    np.testing.assert_array_equal(bgr[..., ::-1], rgb)


def test_reads_rgb_written_by_opencv(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = [255, 0, 0]  # a red pixel top-left
    rgb[1, 2] = [0, 0, 255]  # a blue pixel bottom-right
    cv2.imwrite(str(tmp_path / "cv.png"), rgb[..., ::-1])
    np.testing.assert_array_equal(read_rgb(tmp_path / "cv.png"), rgb)


def test_grey_is_replicated(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgb = read_rgb(tmp_path / "grey.png")
    assert rgb.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)


def test_alpha_is_dropped_and_palette_expanded(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.png"), rgba[..., :3])
    two_colours = np.zeros((4, 4, 3), dtype=np.uint8)
    two_colours[:2] = [200, 10, 30]
    Image.fromarray(two_colours).convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(tmp_path / "palette.png")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    np.testing.assert_array_equal(read_rgb(tmp_path / "palette.png"), two_colours)


def test_jpeg_is_read_approximately(tmp_path: Path) -> None:
    rgb = np.full((16, 16, 3), [120, 60, 200], dtype=np.uint8)
    write_rgb(tmp_path / "v.jpg", rgb)
    back = read_rgb(tmp_path / "v.jpg")
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).max() <= 4


def _expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(ImageFormatError) as info:
        read_rgb(path)
    message = str(info.value)
    assert path.name in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_rejects_16bit_png(tmp_path: Path) -> None:
    path = tmp_path / "disp16.png"
    cv2.imwrite(str(path), np.ones((3, 3), dtype=np.uint16))
    _expect_error(path, "8-bit")


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + bytes(30)])
def test_rejects_non_images(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.png"
    path.write_bytes(content)
    _expect_error(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_rejects_truncated_images(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    write_rgb(good, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect_error(path, "could not be decoded")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "image_2" / "000000_10.png"
    with pytest.raises(FileNotFoundError) as info:
        read_rgb(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), ValueError, "`array`.*uint8.*float32"),
        (np.zeros((4, 4), dtype=np.uint8), ValueError, r"`array`.*\(H, W, 3\)"),
        (np.zeros((4, 4, 4), dtype=np.uint8), ValueError, r"`array`.*\(4, 4, 4\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), ValueError, "`array`"),
        ([[0, 0, 0]], TypeError, "`array`"),
    ],
)
def test_write_rejects_bad_arrays(tmp_path: Path, array: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        write_rgb(tmp_path / "x.png", array)  # type: ignore[arg-type]
    assert not (tmp_path / "x.png").exists()


def test_write_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        write_rgb(tmp_path / "x.notaformat", np.zeros((2, 2, 3), dtype=np.uint8))
    assert not (tmp_path / "x.notaformat").exists()
