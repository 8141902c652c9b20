"""OpenEXR (``.exr``) float maps: IRS disparity (``d_<id>.exr``) and surface normals (``n_<id>.exr``).

IRS stores a disparity map as a single FLOAT channel named ``G`` (its own ``save_exr`` does so, and its loader reads
one-channel files under that name) and normals as ``R``, ``G``, ``B``. EXR rows are top-to-bottom, so, unlike PFM,
nothing is flipped.

Two decoders, chosen per file:

* A built-in decoder for single-part scanline files with ``NO``, ``RLE``, ``ZIPS`` or ``ZIP`` compression and
  ``HALF``/``FLOAT`` channels, written from the OpenEXR file-layout specification. It reads channels by name, so a
  one-channel file works whatever the channel is called, and it does not depend on how OpenCV was built. The tests
  check it bit for bit against the OpenEXR library bundled with OpenCV (files written by OpenCV with each of these
  compressions, HALF and FLOAT) and against FFmpeg's EXR decoder.
* OpenCV's ``cv2.imread`` for everything else (``PIZ``, ``PXR24``, ``B44``, tiled, ...), when OpenCV was built with
  OpenEXR. ``OPENCV_IO_ENABLE_OPENEXR`` is set below, before ``cv2`` is imported; OpenCV reads it at the first EXR
  access, so setting it here also works if another module imported ``cv2`` first. OpenCV maps channels by name: a
  file with any of ``R``/``G``/``B`` comes back as 3-channel BGR with the missing ones filled with 0, so an IRS
  ``G``-only disparity comes back as ``(H, W, 3)`` with zeros in B and R; a ``Y``- or ``Z``-only file comes back as
  one channel, and a single-channel array is written as ``Y``. :func:`read_exr` undoes this from the channel list
  in the header. Not every compression OpenCV can write it can read back (``DWAA`` with the bundled OpenEXR 2.3).

The ``opencv-python-headless`` 4.x wheels bundle OpenEXR 2.3; the 5.0 wheels are built without it
(``cv2.getBuildInformation()`` lists ``OpenEXR: NO``) and then ``cv2`` cannot touch ``.exr`` at all, which the
built-in decoder covers for the compressions datasets use. :func:`write_exr` always uses the built-in encoder
(``ZIP`` by default, FLOAT channels): its output is the same with any OpenCV, and it can name a single channel ``G``
as IRS does, which ``cv2.imwrite`` cannot.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

import functools
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from lightning_hpml.datamodules.formats._checks import as_float32_image, make_parent, read_file_bytes
from lightning_hpml.datamodules.formats.errors import EXRFormatError

__all__ = ["ExrChannel", "ExrHeader", "opencv_has_exr", "read_exr", "read_exr_header", "write_exr"]

_MAGIC = 20000630
_FLAG_TILED, _FLAG_LONG_NAMES, _FLAG_DEEP, _FLAG_MULTIPART = 0x200, 0x400, 0x800, 0x1000
_COMPRESSIONS = ("NO", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44", "B44A", "DWAA", "DWAB")
_LINES_PER_BLOCK = (1, 1, 1, 16, 32, 16, 32, 32, 32, 256)
_BUILTIN_COMPRESSIONS = frozenset({0, 1, 2, 3})
_WRITE_COMPRESSIONS = {"none": 0, "rle": 1, "zips": 2, "zip": 3}
_PIXEL_TYPES = {0: ("UINT", np.dtype("<u4")), 1: ("HALF", np.dtype("<f2")), 2: ("FLOAT", np.dtype("<f4"))}
_OPENCV_BGR_INDEX = {"B": 0, "G": 1, "R": 2}


@dataclass(frozen=True)
class ExrChannel:
    """One entry of the header's channel list."""

    name: str
    """Channel name, e.g. ``"G"``."""
    pixel_type: int
    """0 = UINT, 1 = HALF, 2 = FLOAT."""
    x_sampling: int
    """Horizontal subsampling (1 = full resolution)."""
    y_sampling: int
    """Vertical subsampling (1 = full resolution)."""

    @property
    def pixel_type_name(self) -> str:
        """``"UINT"``, ``"HALF"`` or ``"FLOAT"``."""
        return _PIXEL_TYPES.get(self.pixel_type, (f"type {self.pixel_type}", None))[0]


@dataclass(frozen=True)
class ExrHeader:
    """The parts of an EXR header (of the first part, for multi-part files) that decoding needs."""

    channels: tuple[ExrChannel, ...]
    """Channels in file order (sorted by name, as OpenEXR requires)."""
    compression: int
    """Compression code: 0 NO, 1 RLE, 2 ZIPS, 3 ZIP, 4 PIZ, 5 PXR24, 6 B44, 7 B44A, 8 DWAA, 9 DWAB."""
    data_window: tuple[int, int, int, int]
    """``(x_min, y_min, x_max, y_max)``, inclusive."""
    tiled: bool
    """Tiled rather than scanline storage."""
    deep: bool
    """Deep data (several samples per pixel)."""
    multipart: bool
    """More than one part in the file."""
    offset_table: int
    """Byte offset of the chunk offset table (just past the header)."""

    @property
    def width(self) -> int:
        """Data-window width in pixels."""
        return self.data_window[2] - self.data_window[0] + 1

    @property
    def height(self) -> int:
        """Data-window height in pixels."""
        return self.data_window[3] - self.data_window[1] + 1

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names in file order."""
        return tuple(c.name for c in self.channels)

    @property
    def compression_name(self) -> str:
        """E.g. ``"ZIP"``."""
        return _COMPRESSIONS[self.compression] if self.compression < len(_COMPRESSIONS) else str(self.compression)


@functools.lru_cache(maxsize=1)
def opencv_has_exr() -> bool:
    """Whether this OpenCV build can read and write ``.exr`` (the 5.0 pip wheels cannot)."""
    try:
        return bool(cv2.haveImageWriter("probe.exr"))
    except cv2.error:
        return False


# --------------------------------------------------------------------------------------------------------- header


def _cstring(path: Path, data: bytes, pos: int, max_len: int, what: str) -> tuple[str, int]:
    end = data.find(b"\0", pos, pos + max_len + 1)
    if end < 0:
        raise EXRFormatError(path, f"header {what} at byte {pos} is not NUL-terminated within {max_len} bytes "
                                   "(truncated or not an EXR header)")
    return data[pos:end].decode("latin-1"), end + 1


def _parse_channel_list(path: Path, value: bytes, max_len: int) -> tuple[ExrChannel, ...]:
    channels = []
    pos = 0
    while True:
        name, pos = _cstring(path, value, pos, max_len, "channel name")
        if not name:
            break
        if pos + 16 > len(value):
            raise EXRFormatError(path, f"channel list entry {name!r} is truncated")
        pixel_type, _linear, x_sampling, y_sampling = struct.unpack_from("<iB3xii", value, pos)
        pos += 16
        channels.append(ExrChannel(name, pixel_type, x_sampling, y_sampling))
    if not channels:
        raise EXRFormatError(path, "channel list is empty; expected at least one channel")
    return tuple(channels)


def _parse_header(path: Path, data: bytes) -> ExrHeader:
    if len(data) < 8:
        raise EXRFormatError(path, f"file has {len(data)} bytes, too short for the 8-byte EXR magic and version")
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != _MAGIC:
        raise EXRFormatError(path, f"magic number {data[:4].hex()}, expected 762f3101 (not an OpenEXR file)")
    if version & 0xFF != 2:
        raise EXRFormatError(path, f"file format version {version & 0xFF}, expected 2")
    max_len = 255 if version & _FLAG_LONG_NAMES else 31
    attributes: dict[str, tuple[str, bytes]] = {}
    pos = 8
    while True:
        name, pos = _cstring(path, data, pos, max_len, "attribute name")
        if not name:
            break
        type_name, pos = _cstring(path, data, pos, max_len, f"type of attribute {name!r}")
        if pos + 4 > len(data):
            raise EXRFormatError(path, f"header is truncated in attribute {name!r}")
        (size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise EXRFormatError(path, f"attribute {name!r} claims {size} bytes, beyond the end of the file")
        attributes[name] = (type_name, data[pos:pos + size])
        pos += size
    for required, type_name, size in (("channels", "chlist", None), ("compression", "compression", 1),
                                      ("dataWindow", "box2i", 16)):
        if required not in attributes:
            raise EXRFormatError(path, f"header lacks the required attribute {required!r}")
        found_type, value = attributes[required]
        if found_type != type_name or (size is not None and len(value) != size):
            raise EXRFormatError(path, f"attribute {required!r} has type {found_type!r} and {len(value)} bytes, "
                                       f"expected {type_name!r}")
    channels = _parse_channel_list(path, attributes["channels"][1], max_len)
    compression = attributes["compression"][1][0]
    data_window = struct.unpack("<iiii", attributes["dataWindow"][1])
    if data_window[2] < data_window[0] or data_window[3] < data_window[1]:
        raise EXRFormatError(path, f"empty data window {data_window}; expected x_max >= x_min and y_max >= y_min")
    return ExrHeader(channels=channels, compression=compression, data_window=data_window,
                     tiled=bool(version & _FLAG_TILED), deep=bool(version & _FLAG_DEEP),
                     multipart=bool(version & _FLAG_MULTIPART), offset_table=pos)


def read_exr_header(path: str | os.PathLike[str]) -> ExrHeader:
    """Parse the header of an EXR file (channels, compression, data window, storage kind).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        EXRFormatError: Not an EXR file, or a malformed header.
    """
    p, data = read_file_bytes(path, "EXR file")
    return _parse_header(p, data)


# ---------------------------------------------------------------------------------------------- built-in decoder


def _undo_predictor_and_reorder(t: bytes) -> bytes:
    """Inverse of OpenEXR's ZIP/RLE pre-processing: byte-delta predictor, then even/odd byte split."""
    d = np.frombuffer(t, dtype=np.uint8)
    if d.size == 0:
        return b""
    steps = d + np.uint8(128)  # subtracting 128 and adding 128 agree modulo 256
    steps[0] = d[0]
    undone = np.cumsum(steps, dtype=np.uint8)
    half = (d.size + 1) // 2
    out = np.empty_like(undone)
    out[0::2] = undone[:half]
    out[1::2] = undone[half:]
    return out.tobytes()


def _apply_reorder_and_predictor(raw: bytes) -> bytes:
    """OpenEXR's ZIP/RLE pre-processing: even bytes then odd bytes, then byte deltas offset by 128."""
    r = np.frombuffer(raw, dtype=np.uint8)
    if r.size == 0:
        return b""
    t = np.concatenate([r[0::2], r[1::2]])
    out = np.empty_like(t)
    out[0] = t[0]
    out[1:] = np.diff(t) + np.uint8(128)
    return out.tobytes()


def _rle_decode(path: Path, packed: bytes, expected: int, y: int) -> bytes:
    out = bytearray()
    pos, n = 0, len(packed)
    while pos < n:
        count = packed[pos] - 256 if packed[pos] > 127 else packed[pos]
        pos += 1
        if count < 0:
            if pos - count > n:
                raise EXRFormatError(path, f"RLE data of the block at y={y} ends inside a literal run")
            out += packed[pos:pos - count]
            pos -= count
        else:
            if pos >= n:
                raise EXRFormatError(path, f"RLE data of the block at y={y} ends inside a repeat run")
            out += packed[pos:pos + 1] * (count + 1)
            pos += 1
        if len(out) > expected:
            break
    if len(out) != expected:
        raise EXRFormatError(path, f"RLE block at y={y} decodes to {len(out)} bytes, expected {expected}")
    return bytes(out)


def _rle_encode(t: bytes) -> bytes:
    """OpenEXR run-length coding: runs of 3+ equal bytes as (count-1, byte), other bytes as (-count, bytes...)."""
    out = bytearray()
    n = len(t)
    start = 0
    while start < n:
        end = start + 1
        while end < n and t[end] == t[start] and end - start < 128:
            end += 1
        if end - start >= 3:
            out += bytes((end - start - 1, t[start]))
            start = end
            continue
        # Literal run: up to the next run of 3 equal bytes, at most 127 bytes.
        end = start
        while end < n and end - start < 127:
            if end + 2 < n and t[end] == t[end + 1] == t[end + 2]:
                break
            end += 1
        out += bytes(((start - end) & 0xFF,)) + t[start:end]
        start = end
    return bytes(out)


def _uncompress(path: Path, packed: bytes, expected: int, compression: int, y: int) -> bytes:
    if len(packed) == expected:
        # OpenEXR stores a block raw whenever compressing it would not make it smaller.
        return packed
    if compression == 0 or len(packed) > expected:
        raise EXRFormatError(path, f"block at y={y} holds {len(packed)} bytes, expected "
                                   f"{'' if compression == 0 else 'at most '}{expected}")
    if compression == 1:
        t = _rle_decode(path, packed, expected, y)
    else:
        try:
            t = zlib.decompress(packed)
        except zlib.error as err:
            raise EXRFormatError(path, f"zlib data of the block at y={y} is corrupt ({err})") from None
        if len(t) != expected:
            raise EXRFormatError(path, f"block at y={y} decompresses to {len(t)} bytes, expected {expected}")
    return _undo_predictor_and_reorder(t)


def _decode_builtin(path: Path, data: bytes, header: ExrHeader, wanted: tuple[str, ...]) -> list[np.ndarray]:
    _, y_min, _, y_max = header.data_window
    width, height = header.width, header.height
    per_block = _LINES_PER_BLOCK[header.compression]
    n_blocks = -(-height // per_block)
    table_end = header.offset_table + 8 * n_blocks
    if table_end > len(data):
        raise EXRFormatError(path, f"truncated: the offset table of {n_blocks} blocks ends at byte {table_end}, "
                                   f"the file has {len(data)} bytes")
    offsets = np.frombuffer(data, dtype="<u8", count=n_blocks, offset=header.offset_table)
    layout = []  # (name, dtype, byte offset within a scanline)
    line_bytes = 0
    for ch in header.channels:
        if ch.pixel_type not in _PIXEL_TYPES:
            raise EXRFormatError(path, f"channel {ch.name!r} has unknown pixel type {ch.pixel_type}")
        dtype = _PIXEL_TYPES[ch.pixel_type][1]
        layout.append((ch.name, dtype, line_bytes))
        line_bytes += width * dtype.itemsize
    # zlib cannot shrink data by much more than 1000:1, so a larger claim is a corrupt header, not a real image;
    # refusing it avoids allocating gigabytes for a few-byte file.
    if height * line_bytes > 1100 * len(data) + 4096:
        raise EXRFormatError(path, f"data window {width} x {height} with {len(layout)} channel(s) is implausibly "
                                   f"large for a file of {len(data)} bytes (corrupt header?)")
    planes = {name: np.empty((height, width), dtype=dtype) for name, dtype, _ in layout if name in wanted}
    seen = np.zeros(n_blocks, dtype=bool)
    for offset in offsets.tolist():
        if offset < table_end or offset + 8 > len(data):
            raise EXRFormatError(path, f"block offset {offset} lies outside the pixel data (file has {len(data)} "
                                       "bytes); the file is truncated or was not finished")
        y, size = struct.unpack_from("<ii", data, offset)
        if not y_min <= y <= y_max or (y - y_min) % per_block:
            raise EXRFormatError(path, f"block at byte {offset} starts at y={y}, which is not a block start in the "
                                       f"data window y={y_min}..{y_max} ({per_block} lines per block)")
        index = (y - y_min) // per_block
        if seen[index]:
            raise EXRFormatError(path, f"two blocks start at y={y}")
        seen[index] = True
        start = offset + 8
        if size < 0 or start + size > len(data):
            raise EXRFormatError(path, f"truncated: block at y={y} claims {size} bytes, the file ends after "
                                       f"{len(data) - start}")
        lines = min(per_block, y_max - y + 1)
        raw = _uncompress(path, data[start:start + size], lines * line_bytes, header.compression, y)
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(lines, line_bytes)
        row0 = y - y_min
        for name, dtype, col in layout:
            if name in planes:
                chunk = np.ascontiguousarray(rows[:, col:col + width * dtype.itemsize])
                planes[name][row0:row0 + lines] = chunk.view(dtype)
    return [planes[name] for name in wanted]


# ------------------------------------------------------------------------------------------------- OpenCV decoder


def _decode_opencv(path: Path, header: ExrHeader, wanted: tuple[str, ...]) -> list[np.ndarray]:
    names = set(header.channel_names)
    if names & {"R", "G", "B"}:
        index = dict(_OPENCV_BGR_INDEX)
    elif names & {"RY", "BY"}:
        raise EXRFormatError(path, "luminance/chroma (Y, RY, BY) files are converted to RGB by OpenCV; the stored "
                                   "channels cannot be read one by one")
    elif "Y" in names:
        index = {"Y": 0}
    elif "Z" in names:
        index = {"Z": 0}
    else:
        index = {}
    if "A" in names and index:
        index["A"] = len(index)
    unreadable = [n for n in wanted if n not in index]
    if unreadable:
        raise EXRFormatError(path, f"channels {unreadable} cannot be read through OpenCV (it returns only "
                                   f"{sorted(index) or 'nothing'} for a file with channels {sorted(names)})")
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise EXRFormatError(path, "OpenCV could not decode the file (corrupt or unsupported)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[:2] != (header.height, header.width) or image.shape[2] < len(set(index.values())):
        raise EXRFormatError(path, f"OpenCV decoded shape {image.shape}, expected ({header.height}, "
                                   f"{header.width}) with channels {sorted(index)}")
    return [image[:, :, index[n]] for n in wanted]


# ------------------------------------------------------------------------------------------------------ public


def _select(path: Path, header: ExrHeader, channels: str | Sequence[str] | None) -> tuple[tuple[str, ...], bool]:
    """Return the channel names to read and whether the result is 2-D."""
    names = header.channel_names
    if channels is None:
        if len(names) == 1:
            return names, True
        if sorted(names) == ["B", "G", "R"]:
            return ("R", "G", "B"), False
        raise EXRFormatError(path, f"has channels {list(names)}; without `channels` read_exr accepts exactly one "
                                   "channel (returned as (H, W)) or exactly R, G, B (returned as (H, W, 3)). Pass "
                                   "e.g. channels=('R', 'G', 'B') or channels='Z'")
    wanted = (channels,) if isinstance(channels, str) else tuple(channels)
    if not wanted or len(set(wanted)) != len(wanted) or not all(isinstance(n, str) for n in wanted):
        raise ValueError(f"`channels` must be a channel name or a non-empty sequence of distinct names, got "
                         f"{channels!r}")
    missing = [n for n in wanted if n not in names]
    if missing:
        raise EXRFormatError(path, f"has no channel(s) {missing}; it has {list(names)}")
    return wanted, isinstance(channels, str)


def read_exr(path: str | os.PathLike[str], channels: str | Sequence[str] | None = None) -> np.ndarray:
    """Read an OpenEXR file as float32 with rows top-to-bottom.

    Args:
        path: The ``.exr`` file.
        channels: ``None`` picks automatically: the only channel of a one-channel file (any name, e.g. IRS ``G``
            or OpenCV's ``Y``) as ``(H, W)``, or ``R, G, B`` as ``(H, W, 3)`` in RGB order; any other channel set
            is an error that lists the channels. A name returns that channel as ``(H, W)``; a sequence of names
            returns ``(H, W, len(channels))`` in the given order.

    Returns:
        C-contiguous float32 array covering the header's data window (HALF channels are widened exactly).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        EXRFormatError: Not an EXR file, a malformed or truncated file, a missing channel, a UINT or subsampled
            channel, or a compression/storage kind the built-in decoder does not handle (anything but scanline NO,
            RLE, ZIPS, ZIP) while OpenCV lacks OpenEXR support.
        ValueError: ``channels`` is not a name or a sequence of distinct names.
    """
    p, data = read_file_bytes(path, "EXR file")
    header = _parse_header(p, data)
    wanted, flat = _select(p, header, channels)
    for ch in header.channels:
        if ch.name not in wanted:
            continue
        if ch.pixel_type not in (1, 2):
            raise EXRFormatError(p, f"channel {ch.name!r} has pixel type {ch.pixel_type_name}; read_exr returns "
                                    "float32 and reads HALF and FLOAT channels only")
        if ch.x_sampling != 1 or ch.y_sampling != 1:
            raise EXRFormatError(p, f"channel {ch.name!r} is subsampled ({ch.x_sampling} x {ch.y_sampling}); "
                                    "only full-resolution channels are supported")
    builtin = (not header.tiled and not header.deep and not header.multipart
               and header.compression in _BUILTIN_COMPRESSIONS)
    if builtin:
        planes = _decode_builtin(p, data, header, wanted)
    elif opencv_has_exr() and not header.deep:
        planes = _decode_opencv(p, header, wanted)
    else:
        kind = "deep" if header.deep else "multi-part" if header.multipart else "tiled" if header.tiled else "scanline"
        raise EXRFormatError(p, f"{kind} file with {header.compression_name} compression: the built-in decoder "
                                "reads single-part scanline files with NO, RLE, ZIPS or ZIP compression, and this "
                                "OpenCV build has no OpenEXR support. Re-save it as a scanline file with ZIP "
                                "compression, or use an OpenCV built with OpenEXR")
    if flat:
        return np.ascontiguousarray(planes[0], dtype=np.float32)
    return np.ascontiguousarray(np.stack(planes, axis=-1), dtype=np.float32)


def _attribute(name: str, type_name: str, value: bytes) -> bytes:
    return name.encode("ascii") + b"\0" + type_name.encode("ascii") + b"\0" + struct.pack("<i", len(value)) + value


def write_exr(path: str | os.PathLike[str], array: np.ndarray, *, channel_name: str = "Y",
              compression: Literal["none", "rle", "zips", "zip"] = "zip") -> None:
    """Write a float map as a single-part scanline OpenEXR file with FLOAT channels, creating parent folders.

    Args:
        path: Destination file.
        array: Floating-point ``(H, W)`` (one channel named ``channel_name``) or ``(H, W, 3)`` RGB (channels
            ``R``, ``G``, ``B``). ``inf``/``nan`` are stored as they are.
        channel_name: Name of the channel of a 2-D array. ``"Y"`` is what OpenCV writes and reads back as one
            channel; IRS disparity files use ``"G"``.
        compression: Block compression; all four are lossless.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: ``array`` is not floating point, has another shape or overflows float32; a bad
            ``channel_name`` or ``compression``.
    """
    values = as_float32_image(array, "array")
    if compression not in _WRITE_COMPRESSIONS:
        raise ValueError(f"`compression` must be one of {sorted(_WRITE_COMPRESSIONS)}, got {compression!r}")
    if values.ndim == 2:
        if (not isinstance(channel_name, str) or not channel_name or len(channel_name) > 31
                or not channel_name.isascii() or "\0" in channel_name):
            raise ValueError(f"`channel_name` must be 1 to 31 ASCII characters without NUL, got {channel_name!r}")
        names, planes = [channel_name], [values]
    else:
        names, planes = ["B", "G", "R"], [values[..., 2], values[..., 1], values[..., 0]]
    height, width = values.shape[:2]
    code = _WRITE_COMPRESSIONS[compression]
    per_block = _LINES_PER_BLOCK[code]

    chlist = b"".join(n.encode("ascii") + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for n in names) + b"\0"
    window = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    header = b"".join([
        struct.pack("<ii", _MAGIC, 2),
        _attribute("channels", "chlist", chlist),
        _attribute("compression", "compression", bytes((code,))),
        _attribute("dataWindow", "box2i", window),
        _attribute("displayWindow", "box2i", window),
        _attribute("lineOrder", "lineOrder", b"\0"),
        _attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attribute("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
        _attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        b"\0",
    ])
    # Scanline layout: each line holds every channel's row in turn, in channel-name order.
    lines = np.stack(planes, axis=1).astype("<f4")  # (H, C, W)
    n_blocks = -(-height // per_block)
    position = len(header) + 8 * n_blocks
    offsets, chunks = [], []
    for y in range(0, height, per_block):
        raw = lines[y:y + per_block].tobytes()
        packed = raw
        if code != 0:
            pre = _apply_reorder_and_predictor(raw)
            candidate = zlib.compress(pre, 6) if code in (2, 3) else _rle_encode(pre)
            if len(candidate) < len(raw):
                packed = candidate
        chunk = struct.pack("<ii", y, len(packed)) + packed
        offsets.append(position)
        chunks.append(chunk)
        position += len(chunk)
    p = make_parent(path)
    with open(p, "wb") as f:
        f.write(header)
        f.write(struct.pack(f"<{n_blocks}Q", *offsets))
        for chunk in chunks:
            f.write(chunk)
