"""OpenEXR through OpenCV: exact round trips, IRS-style single ``G`` channel files, channel selection, files OpenCV
writes with other compressions and HALF pixels, and errors for malformed files and channels OpenCV cannot return."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lightning_hpml.datamodules.formats import (
    EXRFormatError,
    opencv_has_exr,
    read_disparity,
    read_exr,
    read_exr_channels,
    write_disparity,
    write_exr,
)
from lightning_hpml.datamodules.formats import exr as exr_module

float32_maps = st.tuples(st.integers(1, 12), st.integers(1, 9), st.sampled_from([1, 3])).flatmap(
    lambda s: hnp.arrays(
        np.float32, s[:2] if s[2] == 1 else (*s[:2], 3), elements=st.floats(width=32) | st.sampled_from([0.0, 1.0])
    )
)


def _single_channel_file(path: Path, array: np.ndarray, name: str, *, uncompressed: bool = False) -> Path:
    """Write ``array`` with OpenCV (one channel named ``Y``), then rename that channel in the header.

    For a one-channel file the name appears only in the ``channels`` attribute, so swapping one single-letter name
    for another leaves a valid file: this is how IRS's ``G``-only disparity files look.
    """
    params = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT]
    if uncompressed:
        params += [cv2.IMWRITE_EXR_COMPRESSION, cv2.IMWRITE_EXR_COMPRESSION_NO]
    assert cv2.imwrite(str(path), array, params)
    entry = b"channels\0chlist\0" + struct.pack("<i", 19) + b"Y\0"
    content = path.read_bytes()
    assert content.count(entry) == 1
    path.write_bytes(content.replace(entry, entry[:-2] + name.encode() + b"\0"))
    return path


def _expect_error(path: Path, *fragments: str, channels: object = None) -> None:
    with pytest.raises(EXRFormatError) as info:
        read_exr(path, channels=channels)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_this_opencv_has_exr() -> None:
    assert opencv_has_exr()  # the project pins opencv-python-headless<5, whose wheels bundle OpenEXR


@settings(max_examples=40, deadline=None)
@given(array=float32_maps)
def test_round_trip_is_exact(array: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "new" / "d_00001.exr"
        write_exr(path, array)
        back = read_exr(path)
        channels = read_exr_channels(path)
    assert back.dtype == np.float32 and back.shape == array.shape
    assert back.flags.c_contiguous and back.flags.writeable
    assert np.array_equal(back, array, equal_nan=True)
    assert channels == ({"B": "FLOAT", "G": "FLOAT", "R": "FLOAT"} if array.ndim == 3 else {"Y": "FLOAT"})


def test_rgb_order_rows_top_to_bottom_and_channel_selection(tmp_path: Path) -> None:
    rgb = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    path = tmp_path / "n_00001.exr"
    write_exr(path, rgb)
    np.testing.assert_array_equal(read_exr(path), rgb)
    np.testing.assert_array_equal(read_exr(path, channels="B"), rgb[..., 2])
    np.testing.assert_array_equal(read_exr(path, channels=["G", "R"]), rgb[..., [1, 0]])
    np.testing.assert_array_equal(read_exr(path, channels=["B"]), rgb[..., 2:])  # a sequence keeps the axis
    # Rows are stored top row first: the uncompressed top scanline precedes the bottom one in the file.
    grey = np.arange(5 * 4, dtype=np.float32).reshape(5, 4) + 100
    raw = tmp_path / "raw.exr"
    cv2.imwrite(
        str(raw),
        grey,
        [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT, cv2.IMWRITE_EXR_COMPRESSION, cv2.IMWRITE_EXR_COMPRESSION_NO],
    )
    content = raw.read_bytes()
    assert 0 < content.index(grey[0].tobytes()) < content.index(grey[-1].tobytes())
    np.testing.assert_array_equal(read_exr(raw), grey)


@pytest.mark.parametrize("name", ["G", "R", "B", "Y"])
def test_single_channel_file_is_read_whatever_its_name(tmp_path: Path, name: str) -> None:
    disp = np.random.default_rng(0).uniform(0, 200, (7, 11)).astype(np.float32)
    disp[0, 0] = np.inf
    path = _single_channel_file(tmp_path / "d_00001.exr", disp, name)
    assert read_exr_channels(path) == {name: "FLOAT"}
    back = read_exr(path)
    assert back.shape == (7, 11)
    np.testing.assert_array_equal(back, disp)
    np.testing.assert_array_equal(read_exr(path, channels=name), disp)
    if name == "G":
        # Why the header is read at all: OpenCV returns IRS's G-only file as BGR with zeros in B and R.
        bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert bgr.shape == (7, 11, 3) and not bgr[..., [0, 2]].any()
        back, valid = read_disparity(path)
        np.testing.assert_array_equal(back[valid], disp[valid])
        assert valid.sum() == disp.size - 1 and not valid[0, 0]


@pytest.mark.parametrize("name", ["Z", "X"])
def test_channel_opencv_does_not_return_is_refused(tmp_path: Path, name: str) -> None:
    # OpenCV returns a Z-only file as zeros and an X-only file not at all; read_exr must not return zeros.
    path = _single_channel_file(tmp_path / "depth.exr", np.ones((3, 4), dtype=np.float32), name)
    _expect_error(path, f"['{name}']", "OpenCV")


def test_disparity_round_trip(tmp_path: Path) -> None:
    disp = np.array([[48.0, 4.8], [7.0, 0.5]], dtype=np.float32)
    valid = np.array([[True, True], [False, True]])
    write_disparity(tmp_path / "irs" / "d.exr", disp, valid)
    back, back_valid = read_disparity(tmp_path / "irs" / "d.exr")
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back[valid], disp[valid])
    assert read_exr_channels(tmp_path / "irs" / "d.exr") == {"Y": "FLOAT"}


@pytest.mark.parametrize("compression", ["NO", "RLE", "ZIPS", "PIZ"])
@pytest.mark.parametrize("half", [False, True])
def test_reads_other_compressions_and_half(tmp_path: Path, compression: str, half: bool) -> None:
    bgr = np.random.default_rng(1).uniform(-5, 200, (19, 13, 3)).astype(np.float32)
    path = tmp_path / f"{compression}.exr"
    assert cv2.imwrite(
        str(path),
        bgr,
        [
            cv2.IMWRITE_EXR_TYPE,
            cv2.IMWRITE_EXR_TYPE_HALF if half else cv2.IMWRITE_EXR_TYPE_FLOAT,
            cv2.IMWRITE_EXR_COMPRESSION,
            getattr(cv2, f"IMWRITE_EXR_COMPRESSION_{compression}"),
        ],
    )
    assert set(read_exr_channels(path).values()) == {"HALF" if half else "FLOAT"}
    expected = bgr.astype(np.float16).astype(np.float32) if half else bgr
    np.testing.assert_array_equal(read_exr(path), expected[..., ::-1])


def test_rgba_needs_explicit_channels(tmp_path: Path) -> None:
    bgra = np.random.default_rng(2).random((5, 6, 4), dtype=np.float32)
    path = tmp_path / "rgba.exr"
    assert cv2.imwrite(str(path), bgra, [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT])
    assert list(read_exr_channels(path)) == ["A", "B", "G", "R"]
    _expect_error(path, "['A', 'B', 'G', 'R']", "channels=")
    np.testing.assert_array_equal(read_exr(path, channels=("R", "G", "B", "A")), bgra[..., [2, 1, 0, 3]])
    np.testing.assert_array_equal(read_exr(path, channels="A"), bgra[..., 3])


def test_channel_selection_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.exr"
    write_exr(path, np.ones((2, 3)))
    _expect_error(path, "no channel", "['R']", channels="R")
    for bad in (["Y", "Y"], [], [1]):
        with pytest.raises(ValueError, match="`channels`"):
            read_exr(path, channels=bad)  # type: ignore[arg-type]


def test_uint_channel_is_refused(tmp_path: Path) -> None:
    path = _single_channel_file(tmp_path / "ids.exr", np.ones((2, 3), dtype=np.float32), "Y", uncompressed=True)
    entry = b"Y\0" + struct.pack("<i", 2)
    path.write_bytes(path.read_bytes().replace(entry, b"Y\0" + struct.pack("<i", 0), 1))
    assert read_exr_channels(path) == {"Y": "UINT"}
    _expect_error(path, "['Y']", "UINT")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty file"),
        (b"v/1", "not an OpenEXR file"),
        (b"this is not an EXR file at all", "magic number"),
        (b"v/1\x01\x01\0\0\0", "version 1, expected 2"),
        (b"v/1\x01\x02\0", "version field"),
        (b"v/1\x01\x02\0\0\0\0", "no 'channels'"),
        (b"v/1\x01\x02\0\0\0" + b"x" * 40, "longer than 31 bytes"),
    ],
)
def test_malformed_header(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad.exr"
    path.write_bytes(content)
    _expect_error(path, fragment)


def test_truncated_files(tmp_path: Path) -> None:
    path = tmp_path / "d.exr"
    write_exr(path, np.random.default_rng(3).random((40, 7), dtype=np.float32))
    content = path.read_bytes()
    for n in (12, 30, 60, 200, len(content) // 2, len(content) - 30):  # the channel list ends before byte 60
        cut = tmp_path / f"cut_{n}.exr"
        cut.write_bytes(content[:n])
        _expect_error(cut, "truncated", "header" if n < 60 else "OpenCV could not decode")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "IRS" / "d_00001.exr"
    for read in (read_exr, read_exr_channels):
        with pytest.raises(FileNotFoundError) as info:
            read(path)
        assert path.name in str(info.value)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 2), dtype=np.int16), "`array`.*floating"),
        (np.zeros((2, 2, 2), dtype=np.float32), "`array`.*shape"),
        (np.array([[1e300]]), "`array`.*float32"),
    ],
)
def test_write_rejects_bad_arrays(tmp_path: Path, array: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_exr(tmp_path / "x.exr", array)
    assert not (tmp_path / "x.exr").exists()


def test_opencv_without_exr_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.exr"
    write_exr(path, np.ones((2, 2), dtype=np.float32))
    monkeypatch.setattr(exr_module, "opencv_has_exr", lambda: False)
    for call in (lambda: read_exr(path), lambda: write_exr(tmp_path / "e.exr", np.ones((2, 2)))):
        with pytest.raises(RuntimeError, match=r'pip install "opencv-python-headless<5"'):
            call()
