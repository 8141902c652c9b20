"""PNG signature and ``IHDR`` inspection without decoding the pixels.

KITTI (16-bit grey) and MPI Sintel (8-bit RGB) both store disparity as ``.png``; telling them apart, and rejecting a
PNG of the wrong kind with a precise message, only needs the bit depth and colour type from the ``IHDR`` chunk, which
the PNG specification places first, right after the 8-byte signature.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PNG_SIGNATURE", "PngInfo", "read_png_info"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@dataclass(frozen=True)
class PngInfo:
    """What the ``IHDR`` chunk says about a PNG."""

    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    bit_depth: int
    """Bits per sample (1, 2, 4, 8 or 16)."""
    colour_type: int
    """PNG colour type code: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA."""

    @property
    def channels(self) -> int:
        """Samples per pixel as stored (a palette image stores one index per pixel)."""
        return _CHANNELS.get(self.colour_type, 0)

    def describe(self) -> str:
        """Human-readable kind, e.g. ``'8-bit RGB'``, for error messages."""
        kind = _COLOUR_TYPES.get(self.colour_type, f"colour type {self.colour_type}")
        return f"{self.bit_depth}-bit {kind}"


def read_png_info(path: str | os.PathLike[str]) -> PngInfo | None:
    """Return the ``IHDR`` fields of a PNG file, or ``None`` if the file is not a PNG (no signature or no IHDR).

    The caller checks that the file exists first and turns ``None`` into its own format error.
    """
    with open(Path(path), "rb") as f:
        head = f.read(8 + 8 + 13)
    if len(head) < 29 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    return PngInfo(width=width, height=height, bit_depth=bit_depth, colour_type=colour_type)
