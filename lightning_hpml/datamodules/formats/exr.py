"""OpenEXR (``.exr``) float maps: IRS disparity (``d_<id>.exr``) and surface normals (``n_<id>.exr``).

OpenCV decodes and encodes the pixels (its 4.x wheels bundle OpenEXR; the 5.0 wheels do not, hence the ``<5`` pin;
``OPENCV_IO_ENABLE_OPENEXR`` is set below and read by OpenCV at its first EXR access). OpenCV maps channels by name
and does not say which a file holds: any of ``R``/``G``/``B`` comes back as BGR with the missing ones filled with 0
(IRS's ``G``-only disparity becomes ``(H, W, 3)``), ``Y`` as one channel, a ``Z``-only file as zeros. So the channel
list is read from the header here, and the stored channels are picked out of OpenCV's result; channels OpenCV does
not return are refused rather than handed back as zeros. EXR rows are top-to-bottom: nothing is flipped.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

import functools
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from lightning_hpml.datamodules.formats._checks import as_float32_image, make_parent, require_file
from lightning_hpml.datamodules.formats.errors import EXRFormatError

__all__ = ["opencv_has_exr", "read_exr", "read_exr_channels", "write_exr"]

_MAGIC = struct.pack("<i", 20000630)
_PIXEL_TYPES = {0: "UINT", 1: "HALF", 2: "FLOAT"}


@functools.lru_cache(maxsize=1)
def opencv_has_exr() -> bool:
    """Whether this OpenCV can encode and decode ``.exr`` (built with OpenEXR and the codec not disabled)."""
    try:
        ok, buffer = cv2.imencode(".exr", np.zeros((1, 1), dtype=np.float32))
        return bool(ok) and cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) is not None
    except cv2.error:
        return False


def _require_opencv_exr(path: Path) -> None:
    if not opencv_has_exr():
        raise RuntimeError(
            f"{os.fspath(path)}: this OpenCV ({cv2.__version__}) cannot read or write .exr files. "
            'Fix: pip install "opencv-python-headless<5" (the 5.x wheels lack OpenEXR) and leave '
            "OPENCV_IO_ENABLE_OPENEXR unset or 1"
        )


def _take(path: Path, f: BinaryIO, n: int, what: str) -> bytes:
    if n < 0 or len(data := f.read(n)) != n:
        raise EXRFormatError(
            path, f"truncated or corrupt header: the {what} " + ("is cut off" if n >= 0 else f"has negative size {n}")
        )
    return data


def _cstring(path: Path, f: BinaryIO, max_len: int, what: str) -> str:
    name = bytearray()
    while (c := _take(path, f, 1, what)) != b"\0":
        name += c
        if len(name) > max_len:
            raise EXRFormatError(path, f"{what} is longer than {max_len} bytes (corrupt header)")
    return name.decode("latin-1")


def read_exr_channels(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an EXR header's channel list as ``{name: "HALF" | "FLOAT" | "UINT"}`` in file (name) order.

    Reads the magic number, the version flags and the attributes up to ``channels``, nothing more.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        EXRFormatError: Not an EXR file, a truncated or malformed header, or no ``channels`` attribute.
    """
    p = require_file(path, "EXR file")
    with p.open("rb") as f:
        if (magic := f.read(4)) != _MAGIC:
            raise EXRFormatError(
                p, f"magic number {magic.hex() or '(empty file)'}, expected {_MAGIC.hex()} (not an OpenEXR file)"
            )
        (version,) = struct.unpack("<i", _take(p, f, 4, "version field"))
        if version & 0xFF != 2:
            raise EXRFormatError(p, f"file format version {version & 0xFF}, expected 2")
        max_len = 255 if version & 0x400 else 31  # the "long names" flag
        while name := _cstring(p, f, max_len, "attribute name"):
            _cstring(p, f, max_len, f"type of attribute {name!r}")
            (size,) = struct.unpack("<i", _take(p, f, 4, f"size of attribute {name!r}"))
            value = _take(p, f, size, f"attribute {name!r}")
            if name == "channels":
                break
        else:
            raise EXRFormatError(p, "header has no 'channels' attribute")
    channels, pos = {}, 0
    while (end := value.find(b"\0", pos)) != pos:  # entries: name, NUL, 16 bytes; an empty name ends the list
        if end < 0 or end + 17 > len(value):
            raise EXRFormatError(p, f"truncated entry at byte {pos} of the 'channels' attribute")
        pixel_type = struct.unpack_from("<i", value, end + 1)[0]
        channels[value[pos:end].decode("latin-1")] = _PIXEL_TYPES.get(pixel_type, f"type {pixel_type}")
        pos = end + 17
    if not channels:
        raise EXRFormatError(p, "channel list is empty; expected at least one channel")
    return channels


def _opencv_index(names: Sequence[str]) -> dict[str, int]:
    """Where ``cv2.imread(..., IMREAD_UNCHANGED)`` puts each stored channel (checked with OpenCV 4.14)."""
    if {"R", "G", "B"} & set(names):
        index = {"B": 0, "G": 1, "R": 2}
    elif "Y" in names and not {"RY", "BY"} & set(names):  # OpenCV converts Y/RY/BY (luma/chroma) to RGB
        index = {"Y": 0}
    else:
        return {}
    if "A" in names:
        index["A"] = len(index)
    return {n: i for n, i in index.items() if n in names}


def read_exr(path: str | os.PathLike[str], channels: str | Sequence[str] | None = None) -> np.ndarray:
    """Read an OpenEXR file as float32 with rows top-to-bottom.

    Args:
        path: The ``.exr`` file.
        channels: ``None``: the only channel of a one-channel file (IRS's ``G``, OpenCV's ``Y``) as ``(H, W)``, or
            ``R, G, B`` as ``(H, W, 3)`` RGB; other channel sets are an error that lists them. A name gives that
            channel as ``(H, W)``, a sequence of names ``(H, W, len(channels))``. Readable: ``R``, ``G``, ``B``,
            ``A``, and ``Y`` without chroma (what OpenCV decodes); not ``Z`` or other names.

    Returns:
        C-contiguous float32 array (HALF channels widened exactly).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        EXRFormatError: Not an EXR file, a malformed or truncated file, a missing, UINT or undecodable channel.
        ValueError: ``channels`` is not a name or a sequence of distinct names.
        RuntimeError: This OpenCV cannot decode EXR (the message says how to fix it).
    """
    p = require_file(path, "EXR file")
    stored = read_exr_channels(p)
    names = list(stored)
    flat = isinstance(channels, str) or (channels is None and len(names) == 1)
    if channels is None:
        if not flat and sorted(names) != ["B", "G", "R"]:
            raise EXRFormatError(
                p,
                f"has channels {names}; without `channels` read_exr accepts exactly one "
                "channel (returned as (H, W)) or exactly R, G, B (returned as (H, W, 3)). "
                "Pass e.g. channels=('R', 'G', 'B') or channels='A'",
            )
        wanted = tuple(names) if flat else ("R", "G", "B")
    else:
        wanted = (channels,) if isinstance(channels, str) else tuple(channels)
        if not wanted or len(set(wanted)) != len(wanted) or not all(isinstance(n, str) for n in wanted):
            raise ValueError(
                f"`channels` must be a channel name or a non-empty sequence of distinct names, got {channels!r}"
            )
        if missing := [n for n in wanted if n not in stored]:
            raise EXRFormatError(p, f"has no channel(s) {missing}; it has {names}")
    index = _opencv_index(names)
    if bad := [n for n in wanted if n not in index or stored[n] not in ("HALF", "FLOAT")]:
        raise EXRFormatError(
            p,
            f"cannot read channel(s) {bad} of a file with channels {stored}: OpenCV returns "
            f"only {sorted(index) or 'none'} of them, and read_exr reads HALF and FLOAT only",
        )
    _require_opencv_exr(p)
    image = cv2.imread(os.fspath(p), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise EXRFormatError(
            p,
            "OpenCV could not decode the pixel data (truncated or corrupt file, or a kind "
            "OpenCV does not read, such as deep data)",
        )
    image = image[:, :, None] if image.ndim == 2 else image
    if image.dtype != np.float32 or image.shape[2] <= max(index.values()):
        raise EXRFormatError(p, f"OpenCV decoded {image.dtype} {image.shape}; expected float32 holding {sorted(index)}")
    picked = image[:, :, [index[n] for n in wanted]]
    return np.ascontiguousarray(picked[:, :, 0] if flat else picked, dtype=np.float32)


def write_exr(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a float map as OpenEXR with FLOAT channels (lossless ZIP compression), creating parent folders.

    Args:
        path: Destination file.
        array: Floating-point ``(H, W)``, written by OpenCV as one channel named ``Y`` (IRS's own writer uses
            ``G``; :func:`read_exr` reads both), or ``(H, W, 3)`` RGB. ``inf``/``nan`` are stored as they are.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: ``array`` is not floating point, has another shape or overflows float32.
        OSError: OpenCV could not write the file.
        RuntimeError: This OpenCV cannot encode EXR (the message says how to fix it).
    """
    values = as_float32_image(array, "array")
    p = Path(path)
    _require_opencv_exr(p)
    bgr = np.ascontiguousarray(values[..., ::-1]) if values.ndim == 3 else values
    make_parent(p)
    if not cv2.imwrite(os.fspath(p), bgr, [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT]):
        raise OSError(f"{os.fspath(p)}: OpenCV could not write the EXR file")
