"""PFM: round trips in both byte orders and channel counts, byte-level layout against hand-built files, tolerant
headers, and a named PFMFormatError for every kind of malformed file."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lightning_hpml.datamodules.formats import PFMFormatError, read_pfm, write_pfm

float32_maps = st.tuples(st.integers(1, 7), st.integers(1, 7), st.sampled_from([1, 3])).flatmap(
    lambda s: hnp.arrays(np.float32, s[:2] if s[2] == 1 else (*s[:2], 3), elements=st.floats(width=32))
)


@settings(max_examples=60, deadline=None)
@given(array=float32_maps, little_endian=st.booleans())
def test_round_trip_is_exact(array: np.ndarray, little_endian: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sub" / "d.pfm"
        write_pfm(path, array, little_endian=little_endian)
        back = read_pfm(path)
        header = path.read_bytes()[:3]
    assert back.dtype == np.float32 and back.dtype.isnative
    assert back.flags.c_contiguous and back.flags.writeable
    assert back.shape == array.shape
    assert np.array_equal(back, array, equal_nan=True)
    assert header == (b"PF\n" if array.ndim == 3 else b"Pf\n")


def test_hand_built_big_endian_file_is_flipped_to_top_down(tmp_path: Path) -> None:
    # 2 rows x 3 columns; PFM stores the bottom row first.
    top, bottom = [1.0, 2.0, 3.0], [4.5, -5.0, np.inf]
    path = tmp_path / "be.pfm"
    path.write_bytes(b"Pf\n3 2\n1.0\n" + struct.pack(">6f", *bottom, *top))
    disp = read_pfm(path)
    assert disp.shape == (2, 3)
    assert disp.dtype == np.dtype("float32") and disp.dtype.isnative
    np.testing.assert_array_equal(disp, np.array([top, bottom], dtype=np.float32))


def test_hand_built_little_endian_colour_file(tmp_path: Path) -> None:
    # 1 row x 2 pixels of interleaved RGB, scale -1 => little-endian.
    path = tmp_path / "le.pfm"
    path.write_bytes(b"PF\n2 1\n-1\n" + struct.pack("<6f", 0.1, 0.2, 0.3, 1.0, 2.0, 3.0))
    rgb = read_pfm(path)
    np.testing.assert_array_equal(rgb, np.array([[[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]]], dtype=np.float32))


def test_written_bytes_follow_the_convention(tmp_path: Path) -> None:
    array = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float64)
    write_pfm(tmp_path / "le.pfm", array)
    write_pfm(tmp_path / "be.pfm", array, little_endian=False)
    assert (tmp_path / "le.pfm").read_bytes() == b"Pf\n3 2\n-1.0\n" + struct.pack("<6f", 4, 5, 6, 1, 2, 3)
    assert (tmp_path / "be.pfm").read_bytes() == b"Pf\n3 2\n1.0\n" + struct.pack(">6f", 4, 5, 6, 1, 2, 3)


@pytest.mark.parametrize(
    "header", [b"Pf 2 1 -1.0\n", b"Pf\r\n2 1\r\n-1.0\r\n", b"Pf\n  2   1\n-2.5\n", b"Pf\n2\n1\n-1.0\n", b"Pf\t2 1\t-1 "]
)
def test_tolerant_header_parsing(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "h.pfm"
    path.write_bytes(header + struct.pack("<2f", 7.0, 8.0))
    np.testing.assert_array_equal(read_pfm(path), np.array([[7.0, 8.0]], dtype=np.float32))


def _expect_error(path: Path, *fragments: str) -> PFMFormatError:
    with pytest.raises(PFMFormatError) as info:
        read_pfm(path)
    message = str(info.value)
    assert path.name in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message
    return info.value


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", ("empty",)),
        (b"P6\n2 1\n255\n" + bytes(6), ("magic", "'P6'")),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), ("magic",)),
        (b"Pf\nx 1\n-1.0\n" + bytes(8), ("dimensions", "not integers")),
        (b"Pf\n0 1\n-1.0\n", ("0 x 1",)),
        (b"Pf\n2 -3\n-1.0\n" + bytes(8), ("2 x -3",)),
        (b"Pf\n2 1\n0.0\n" + bytes(8), ("scale",)),
        (b"Pf\n2 1\nabc\n" + bytes(8), ("scale", "'abc'")),
        (b"Pf\n2 1\nnan\n" + bytes(8), ("scale",)),
        (b"Pf\n2 1\n", ("header ends", "3 field")),
        (b"Pf\n2 1\n-1.0", ("no pixel data",)),
        (b"Pf\n2 2\n-1.0\n" + bytes(15), ("truncated", "15 bytes", "expected 16")),
        (b"PF\n2 1\n-1.0\n" + bytes(8), ("truncated", "2 x 1 x 3")),
        (b"Pf\n2 1\n-1.0\n" + bytes(11), ("3 trailing bytes",)),
        (b"Pf\n" + b"9" * 100 + b" 1\n-1.0\n", ("longer than",)),
    ],
)
def test_malformed_files_raise_named_errors(tmp_path: Path, content: bytes, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "broken_disp.pfm"
    path.write_bytes(content)
    _expect_error(path, *fragments)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "0006.pfm"
    with pytest.raises(FileNotFoundError) as info:
        read_pfm(path)
    assert path.name in str(info.value)


def test_float64_input_is_narrowed_and_overflow_rejected(tmp_path: Path) -> None:
    array = np.array([[0.1, 1e30], [np.inf, -np.inf]])
    write_pfm(tmp_path / "ok.pfm", array)
    np.testing.assert_array_equal(read_pfm(tmp_path / "ok.pfm"), array.astype(np.float32))
    with pytest.raises(ValueError, match=r"`array`.*float32 range"):
        write_pfm(tmp_path / "big.pfm", np.array([[1e39]]))
    assert not (tmp_path / "big.pfm").exists()


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 2), dtype=np.int32), "`array`.*floating-point.*int32"),
        (np.zeros((2, 2, 2), dtype=np.float32), r"`array`.*\(H, W\) or \(H, W, 3\).*\(2, 2, 2\)"),
        (np.zeros(4, dtype=np.float32), r"`array`.*shape"),
        (np.zeros((0, 3), dtype=np.float32), "`array`.*empty"),
    ],
)
def test_write_rejects_bad_arrays(tmp_path: Path, array: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_pfm(tmp_path / "x.pfm", array)


def test_write_rejects_non_arrays(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"`array`.*list"):
        write_pfm(tmp_path / "x.pfm", [[1.0, 2.0]])  # type: ignore[arg-type]
