"""OpenEXR: exact round trips for every compression the writer offers, a hand-built file checked against the
specification's layout, a cross-check of written files with FFmpeg's independent EXR decoder (bundled with
OpenCV), channel selection, and EXRFormatError for malformed or unsupported files."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lightning_hpml.datamodules.formats import EXRFormatError, opencv_has_exr, read_exr, read_exr_header, write_exr
from lightning_hpml.datamodules.formats.exr import _rle_decode

COMPRESSIONS = ["none", "rle", "zips", "zip"]

float32_maps = st.tuples(st.integers(1, 20), st.integers(1, 9), st.sampled_from([1, 3])).flatmap(
    lambda s: hnp.arrays(np.float32, s[:2] if s[2] == 1 else (*s[:2], 3),
                         elements=st.floats(width=32) | st.sampled_from([0.0, 1.0])))


@settings(max_examples=60, deadline=None)
@given(array=float32_maps, compression=st.sampled_from(COMPRESSIONS), name=st.sampled_from(["Y", "G", "Z", "disp"]))
def test_round_trip_is_exact(array: np.ndarray, compression: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x" / "d_00001.exr"
        write_exr(path, array, channel_name=name, compression=compression)  # type: ignore[arg-type]
        back = read_exr(path)
        header = read_exr_header(path)
    assert back.dtype == np.float32 and back.shape == array.shape
    assert back.flags.c_contiguous and back.flags.writeable
    assert np.array_equal(back, array, equal_nan=True)
    assert header.channel_names == (("B", "G", "R") if array.ndim == 3 else (name,))
    assert header.compression_name == {"none": "NO"}.get(compression, compression.upper())
    assert all(c.pixel_type_name == "FLOAT" for c in header.channels)


def test_rgb_channel_order(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1.0, 2.0, 3.0
    rgb[0, 0] = [10.0, 20.0, 30.0]
    write_exr(tmp_path / "n.exr", rgb)
    back = read_exr(tmp_path / "n.exr")
    np.testing.assert_array_equal(back, rgb)
    np.testing.assert_array_equal(read_exr(tmp_path / "n.exr", channels="B"), rgb[..., 2])
    np.testing.assert_array_equal(read_exr(tmp_path / "n.exr", channels=["G", "R"]), rgb[..., [1, 0]])


def _attr(name: str, type_name: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + type_name.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _hand_built_file(compress: bool) -> tuple[bytes, np.ndarray]:
    """A 20 x 2 file with a HALF channel 'A' and a FLOAT channel 'Z', data window offset to (5, 10)."""
    a = np.full((20, 2), 0.5, dtype=np.float16)
    a[:3] = [[0.5, -2.0], [1.0, 3.0], [65504.0, 0.25]]
    z = np.full((20, 2), 7.0, dtype=np.float32)
    z[:3] = [[1.5, 2.5], [np.inf, 4.5], [5.5, -6.5]]
    z[-1] = [-1.0, np.nan]
    chlist = (b"A\0" + struct.pack("<iB3xii", 1, 0, 1, 1) + b"Z\0" + struct.pack("<iB3xii", 2, 0, 1, 1) + b"\0")
    header = struct.pack("<ii", 20000630, 2) + b"".join([
        _attr("channels", "chlist", chlist),
        _attr("compression", "compression", bytes([3 if compress else 0])),
        _attr("dataWindow", "box2i", struct.pack("<iiii", 5, 10, 6, 29)),
        _attr("displayWindow", "box2i", struct.pack("<iiii", 0, 0, 9, 19)),
        _attr("lineOrder", "lineOrder", b"\1"),  # decreasing y: blocks are stored bottom block first
        _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0, 0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
    ]) + b"\0"
    lines = [a[i].astype("<f2").tobytes() + z[i].astype("<f4").tobytes() for i in range(20)]
    if compress:
        # ZIP blocks of 16 lines: even/odd byte split, byte deltas + 128, zlib (written independently of the
        # package's encoder, straight from the OpenEXR layout description).
        blocks = []
        for start in (0, 16):
            raw = b"".join(lines[start:start + 16])
            split = raw[0::2] + raw[1::2]
            deltas = bytes([split[0]] + [(split[i] - split[i - 1] + 128) & 0xFF for i in range(1, len(split))])
            packed = zlib.compress(deltas)
            assert len(packed) < len(raw)
            blocks.append((10 + start, packed))
        blocks.reverse()
    else:
        blocks = [(10 + i, lines[i]) for i in range(20)][::-1]
    table = 8 * len(blocks)
    position = len(header) + table
    offsets, body = [], b""
    for y, data in blocks:
        offsets.append(position + len(body))
        body += struct.pack("<ii", y, len(data)) + data
    return header + struct.pack(f"<{len(blocks)}Q", *offsets) + body, np.stack([a.astype(np.float32), z], -1)


@pytest.mark.parametrize("compress", [False, True])
def test_hand_built_file_with_half_float_and_offset_window(tmp_path: Path, compress: bool) -> None:
    content, expected = _hand_built_file(compress)
    path = tmp_path / "hand.exr"
    path.write_bytes(content)
    header = read_exr_header(path)
    assert header.channel_names == ("A", "Z")
    assert [c.pixel_type_name for c in header.channels] == ["HALF", "FLOAT"]
    assert header.data_window == (5, 10, 6, 29) and (header.height, header.width) == (20, 2)
    np.testing.assert_array_equal(read_exr(path, channels=("A", "Z")), expected)
    np.testing.assert_array_equal(read_exr(path, channels="Z"), expected[..., 1])
    with pytest.raises(EXRFormatError, match=r"\['A', 'Z'\].*channels="):
        read_exr(path)


def test_rle_decoder_on_hand_made_runs(tmp_path: Path) -> None:
    # (count >= 0, byte) repeats byte count+1 times; a negative count -n is followed by n literal bytes.
    assert _rle_decode(tmp_path, bytes([2, 7, 0xFE, 1, 2, 0, 9]), 6, 0) == bytes([7, 7, 7, 1, 2, 9])
    with pytest.raises(EXRFormatError, match="decodes to 6 bytes, expected 5"):
        _rle_decode(tmp_path / "r.exr", bytes([2, 7, 0xFE, 1, 2, 0, 9]), 5, 0)
    with pytest.raises(EXRFormatError, match="literal run"):
        _rle_decode(tmp_path / "r.exr", bytes([0xFD, 1]), 3, 0)


def _ffmpeg_decode(path: Path) -> np.ndarray | None:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
    finally:
        capture.release()
    return frame if ok else None


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_written_files_decode_with_ffmpeg(tmp_path: Path, compression: str) -> None:
    rng = np.random.default_rng(3)
    rgb = rng.random((37, 21, 3), dtype=np.float32)
    rgb[10:30, 3:18] = 0.5  # long runs, so RLE and ZIP really compress
    path = tmp_path / f"rgb_{compression}.exr"
    write_exr(path, rgb, compression=compression)  # type: ignore[arg-type]
    frame = _ffmpeg_decode(path)
    if frame is None:
        pytest.skip("this OpenCV build cannot decode EXR through FFmpeg")
    # FFmpeg converts linear float to 8-bit BGR; allow for its rounding.
    assert frame.shape == (37, 21, 3)
    assert np.abs(frame[..., ::-1] / 255.0 - rgb).max() <= 2.0 / 255.0


def _write(tmp_path: Path, name: str = "d.exr", **kwargs: object) -> tuple[Path, bytes]:
    path = tmp_path / name
    # Few distinct values, so RLE/ZIP blocks really are stored compressed.
    steps = np.floor(np.linspace(0, 4, 40 * 7, dtype=np.float32)).reshape(40, 7)
    write_exr(path, steps, **kwargs)  # type: ignore[arg-type]
    return path, path.read_bytes()


def _expect_error(path: Path, *fragments: str, channels: object = None) -> None:
    with pytest.raises(EXRFormatError) as info:
        read_exr(path, channels=channels)  # type: ignore[arg-type]
    message = str(info.value)
    assert path.name in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_not_an_exr(tmp_path: Path) -> None:
    path = tmp_path / "text.exr"
    path.write_bytes(b"this is not an EXR file at all")
    _expect_error(path, "magic")
    short = tmp_path / "short.exr"
    short.write_bytes(b"v/1")
    _expect_error(short, "too short")


@pytest.mark.parametrize("compression", ["none", "zip"])
def test_truncated_pixel_data(tmp_path: Path, compression: str) -> None:
    _, content = _write(tmp_path, compression=compression)
    cut = tmp_path / f"cut_{compression}.exr"
    cut.write_bytes(content[:-30])
    _expect_error(cut, "truncated")


def test_truncated_header(tmp_path: Path) -> None:
    _, content = _write(tmp_path)
    for n in (12, 60, 200):
        cut = tmp_path / f"header_{n}.exr"
        cut.write_bytes(content[:n])
        with pytest.raises(EXRFormatError) as info:
            read_exr(cut)
        assert cut.name in str(info.value)


def _with_data_window(content: bytes, window: tuple[int, int, int, int]) -> bytes:
    marker = b"dataWindow\0box2i\0" + struct.pack("<i", 16)
    at = content.index(marker) + len(marker)
    return content[:at] + struct.pack("<iiii", *window) + content[at + 16:]


@pytest.mark.parametrize(("window", "fragment"), [
    ((0, 0, 10**8, 39), "implausibly large"),
    ((0, 0, 6, 40), "d_rows.exr"),  # one row more than stored: the offset table no longer matches
    ((0, 0, 5, 39), "d_rows.exr"),  # one column fewer: block sizes no longer match
    ((3, 0, 2, 39), "empty data window"),
])
def test_wrong_dimensions(tmp_path: Path, window: tuple[int, int, int, int], fragment: str) -> None:
    _, content = _write(tmp_path, compression="none")
    path = tmp_path / "d_rows.exr"
    path.write_bytes(_with_data_window(content, window))
    _expect_error(path, fragment)


def test_corrupt_zlib_block(tmp_path: Path) -> None:
    _, content = _write(tmp_path, compression="zip")
    header = read_exr_header(tmp_path / "d.exr")
    first_block = struct.unpack_from("<Q", content, header.offset_table)[0]
    assert struct.unpack_from("<i", content, first_block + 4)[0] < 16 * 7 * 4  # stored compressed
    broken = bytearray(content)
    for i in range(first_block + 8, first_block + 28):
        broken[i] ^= 0x5A
    path = tmp_path / "corrupt.exr"
    path.write_bytes(bytes(broken))
    _expect_error(path, "y=0")


def test_unsupported_compression_is_named(tmp_path: Path) -> None:
    _, content = _write(tmp_path, compression="zip")
    marker = b"compression\0compression\0" + struct.pack("<i", 1)
    at = content.index(marker) + len(marker)
    path = tmp_path / "piz.exr"
    path.write_bytes(content[:at] + bytes([4]) + content[at + 1:])  # claim PIZ
    assert read_exr_header(path).compression_name == "PIZ"
    # Without OpenEXR in OpenCV the message names the compression; with it, OpenCV fails on the ZIP bytes.
    _expect_error(path, *(() if opencv_has_exr() else ("PIZ", "no OpenEXR support")))


def test_fake_tiled_file_is_refused(tmp_path: Path) -> None:
    _, content = _write(tmp_path)
    path = tmp_path / "tiled.exr"
    path.write_bytes(content[:4] + struct.pack("<i", 2 | 0x200) + content[8:])
    assert read_exr_header(path).tiled
    _expect_error(path, *(() if opencv_has_exr() else ("tiled",)))


def test_channel_selection_errors(tmp_path: Path) -> None:
    path, _ = _write(tmp_path, channel_name="G")
    _expect_error(path, "no channel", "['R']", channels="R")
    with pytest.raises(ValueError, match="`channels`"):
        read_exr(path, channels=["G", "G"])
    with pytest.raises(ValueError, match="`channels`"):
        read_exr(path, channels=[])


def test_uint_channel_is_refused(tmp_path: Path) -> None:
    _, content = _write(tmp_path, channel_name="Y", compression="none")
    entry = b"Y\0" + struct.pack("<i", 2)
    path = tmp_path / "uint.exr"
    path.write_bytes(content.replace(entry, b"Y\0" + struct.pack("<i", 0), 1))
    _expect_error(path, "UINT")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "IRS" / "d_00001.exr"
    with pytest.raises(FileNotFoundError) as info:
        read_exr(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"array": np.zeros((2, 2), dtype=np.int16)}, "`array`.*floating"),
    ({"array": np.zeros((2, 2, 2), dtype=np.float32)}, "`array`.*shape"),
    ({"array": np.zeros((2, 2), dtype=np.float32), "channel_name": ""}, "`channel_name`"),
    ({"array": np.zeros((2, 2), dtype=np.float32), "channel_name": "x" * 40}, "`channel_name`"),
    ({"array": np.zeros((2, 2), dtype=np.float32), "compression": "piz"}, "`compression`"),
])
def test_write_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_exr(tmp_path / "x.exr", **kwargs)
    assert not (tmp_path / "x.exr").exists()


needs_opencv_exr = pytest.mark.skipif(not opencv_has_exr(), reason="this OpenCV build has no OpenEXR support")


@needs_opencv_exr
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_written_files_read_exactly_by_openexr(tmp_path: Path, compression: str, channels: int) -> None:
    # OpenCV's EXR codec is the OpenEXR library itself: an independent, strict reader of what write_exr produces.
    rng = np.random.default_rng(channels)
    array = rng.normal(size=(35, 13, 3) if channels == 3 else (35, 13)).astype(np.float32)
    array[5:25] = 2.0  # runs, so RLE/ZIP blocks are stored compressed
    array[0, 0] = np.inf
    path = tmp_path / f"mine_{compression}.exr"
    write_exr(path, array, compression=compression)  # type: ignore[arg-type]
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded[..., ::-1] if channels == 3 else decoded, array)


@needs_opencv_exr
@pytest.mark.parametrize("compression", ["NO", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44"])
@pytest.mark.parametrize("half", [False, True])
def test_reads_files_written_by_openexr(tmp_path: Path, compression: str, half: bool) -> None:
    # NO/RLE/ZIPS/ZIP go through the built-in decoder, the rest through OpenCV; both must match OpenCV's reading.
    rng = np.random.default_rng(0)
    bgr = rng.uniform(0, 200, (37, 19, 3)).astype(np.float32)
    bgr[10:20] = 1.5
    params = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_HALF if half else cv2.IMWRITE_EXR_TYPE_FLOAT,
              cv2.IMWRITE_EXR_COMPRESSION, getattr(cv2, f"IMWRITE_EXR_COMPRESSION_{compression}")]
    for name, image in (("rgb", bgr), ("grey", bgr[..., 1].copy())):
        path = tmp_path / f"{name}_{compression}.exr"
        assert cv2.imwrite(str(path), image, params)
        header = read_exr_header(path)
        assert header.compression_name == compression
        assert header.channel_names == (("B", "G", "R") if name == "rgb" else ("Y",))
        reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        mine = read_exr(path)
        np.testing.assert_array_equal(mine, reference[..., ::-1] if name == "rgb" else reference)
        if compression in ("NO", "RLE", "ZIPS", "ZIP", "PIZ"):  # lossless for both pixel types
            expected = image.astype(np.float16).astype(np.float32) if half else image
            np.testing.assert_array_equal(mine, expected[..., ::-1] if name == "rgb" else expected)


@needs_opencv_exr
def test_opencv_view_of_irs_style_single_g_channel(tmp_path: Path) -> None:
    # What cv2.imread returns for IRS's one-channel 'G' files: BGR with B and R filled with 0.
    grey = np.random.default_rng(0).random((9, 11), dtype=np.float32)
    write_exr(tmp_path / "g.exr", grey, channel_name="G")
    bgr = cv2.imread(str(tmp_path / "g.exr"), cv2.IMREAD_UNCHANGED)
    assert bgr.shape == (9, 11, 3)
    np.testing.assert_array_equal(bgr[..., 1], grey)
    assert not bgr[..., [0, 2]].any()
    np.testing.assert_array_equal(read_exr(tmp_path / "g.exr"), grey)  # read_exr returns the channel itself
