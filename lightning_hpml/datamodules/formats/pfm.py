"""Portable Float Map (``.pfm``): the disparity format of Scene Flow and of Middlebury/ETH3D ground truth.

Layout: a text header of three whitespace-separated fields, ``PF`` (3 channels) or ``Pf`` (1 channel), then
``<width> <height>``, then a scale whose sign gives the byte order (negative: little-endian, positive: big-endian;
its magnitude is not used for disparity), one whitespace byte, and ``width * height * channels`` float32 values with
rows stored bottom-to-top. Readers here return rows top-to-bottom, like every other array in the package.

The header parser splits on any whitespace instead of matching the ``^(\\d+)\\s(\\d+)\\s$`` regex of the official
Scene Flow scripts, so files written with a single line or with CRLF line ends also load. Middlebury and ETH3D mark
invalid pixels with ``inf``; the values are returned unchanged.
"""

from __future__ import annotations

import os

import numpy as np

from lightning_hpml.datamodules.formats._checks import as_float32_image, make_parent, read_file_bytes
from lightning_hpml.datamodules.formats.errors import PFMFormatError

__all__ = ["read_pfm", "write_pfm"]

_MAGIC_CHANNELS = {b"PF": 3, b"Pf": 1}
_WHITESPACE = b" \t\r\n\v\f"
_MAX_TOKEN = 64  # a header field longer than this is not a PFM header


def _header_tokens(path: os.PathLike[str] | str, data: bytes) -> tuple[list[bytes], int]:
    """Split the 4 header fields off ``data``; returns them and the offset of the first pixel byte."""
    tokens: list[bytes] = []
    pos = 0
    n = len(data)
    while len(tokens) < 4:
        while pos < n and data[pos] in _WHITESPACE:
            pos += 1
        start = pos
        while pos < n and data[pos] not in _WHITESPACE and pos - start <= _MAX_TOKEN:
            pos += 1
        token = data[start:pos]
        if not tokens and token not in _MAGIC_CHANNELS:
            raise PFMFormatError(
                path, f"header magic {token[:16].decode('latin-1')!r}, expected 'PF' (3-channel) or 'Pf' (1-channel)"
            )
        if not token:
            found = b" ".join(tokens).decode("latin-1")
            raise PFMFormatError(
                path,
                f"header ends after {len(tokens)} field(s) ({found!r}); expected 'PF'|'Pf', width, height and scale",
            )
        if len(token) > _MAX_TOKEN:
            raise PFMFormatError(
                path, f"header field {len(tokens) + 1} is longer than {_MAX_TOKEN} bytes; not a PFM header"
            )
        tokens.append(token)
    # Exactly one whitespace byte (or CRLF) separates the scale from the binary data.
    if pos >= n:
        raise PFMFormatError(path, "no pixel data after the header")
    if data[pos : pos + 2] == b"\r\n":
        pos += 2
    else:
        pos += 1
    return tokens, pos


def read_pfm(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PFM file as a native-endian, C-contiguous float32 array with rows top-to-bottom.

    Args:
        path: The ``.pfm`` file.

    Returns:
        ``(H, W)`` for a ``Pf`` file, ``(H, W, 3)`` for a ``PF`` file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PFMFormatError: Bad magic, dimensions or scale, fewer pixel bytes than the header announces, or trailing
            bytes after them.
    """
    p, data = read_file_bytes(path, "PFM file")
    if not data:
        raise PFMFormatError(p, "empty file, expected a PFM header ('PF' or 'Pf')")
    (magic, w_tok, h_tok, s_tok), offset = _header_tokens(p, data)
    channels = _MAGIC_CHANNELS[magic]
    try:
        width, height = int(w_tok), int(h_tok)
    except ValueError:
        raise PFMFormatError(
            p,
            f"header dimensions {w_tok.decode('latin-1')!r} {h_tok.decode('latin-1')!r} "
            "are not integers; expected '<width> <height>'",
        ) from None
    if width <= 0 or height <= 0:
        raise PFMFormatError(p, f"header dimensions {width} x {height}; expected positive width and height")
    try:
        scale = float(s_tok)
    except ValueError:
        raise PFMFormatError(
            p,
            f"header scale {s_tok.decode('latin-1')!r} is not a number; expected e.g. "
            "-1.0 (little-endian) or 1.0 (big-endian)",
        ) from None
    if scale == 0.0 or not np.isfinite(scale):
        raise PFMFormatError(
            p, f"header scale {scale!r}; expected a finite non-zero number whose sign gives the byte order"
        )
    expected = width * height * channels * 4
    available = len(data) - offset
    if available < expected:
        raise PFMFormatError(
            p,
            f"truncated: {available} bytes of pixel data, expected {expected} "
            f"({width} x {height} x {channels} float32)",
        )
    if available > expected:
        raise PFMFormatError(
            p,
            f"{available - expected} trailing bytes after the {expected} bytes of pixel data "
            f"({width} x {height} x {channels} float32)",
        )
    dtype = np.dtype("<f4" if scale < 0 else ">f4")
    shape = (height, width) if channels == 1 else (height, width, 3)
    pixels = np.frombuffer(data, dtype=dtype, count=width * height * channels, offset=offset).reshape(shape)
    # Always copy: a one-row flip is still a view of the (read-only) file buffer.
    return np.array(pixels[::-1], dtype=np.float32, order="C", copy=True)


def write_pfm(path: str | os.PathLike[str], array: np.ndarray, little_endian: bool = True) -> None:
    """Write a float map as PFM, creating parent folders.

    The scale field is written as ``-1.0`` (little-endian) or ``1.0`` (big-endian) and rows bottom-to-top, as the
    format requires, so :func:`read_pfm` returns ``array`` exactly (after float32 conversion).

    Args:
        path: Destination file.
        array: Floating-point ``(H, W)`` (written as ``Pf``) or ``(H, W, 3)`` (written as ``PF``). ``inf``/``nan``
            are stored as they are (Middlebury uses ``inf`` for invalid pixels).
        little_endian: Byte order of the pixel data.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: ``array`` is not floating point, has another shape, or overflows float32.
    """
    values = as_float32_image(array, "array")
    height, width = values.shape[:2]
    magic = "PF" if values.ndim == 3 else "Pf"
    header = f"{magic}\n{width} {height}\n{-1.0 if little_endian else 1.0}\n".encode("ascii")
    body = values[::-1].astype("<f4" if little_endian else ">f4").tobytes()
    p = make_parent(path)
    with open(p, "wb") as f:
        f.write(header)
        f.write(body)
