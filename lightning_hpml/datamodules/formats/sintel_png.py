"""MPI Sintel stereo disparity PNG: 8-bit RGB with ``d = R * 4 + G / 2**6 + B / 2**14``.

The three channels hold one 24-bit fixed-point number with 14 fractional bits, ``R * 2**16 + G * 2**8 + B`` over
``2**14``, so disparities in ``[0, 1024)`` are stored in steps of ``2**-14`` px. Every such value is exactly
representable in float32 (24 significant bits), so reading is exact and writing a value on that grid round-trips
bit for bit. The format has no invalid marker; Sintel's ``occlusions``/``outofframe`` masks are separate files.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from lightning_hpml.datamodules.formats._checks import check_float_map, make_parent, require_file
from lightning_hpml.datamodules.formats._png import read_png_info
from lightning_hpml.datamodules.formats.errors import SintelDisparityFormatError

__all__ = ["SINTEL_DISPARITY_STEP", "SINTEL_MAX_DISPARITY", "read_sintel_disparity", "write_sintel_disparity"]

_FRACTION_BITS = 14
SINTEL_DISPARITY_STEP = 2.0**-_FRACTION_BITS
"""Quantisation step of the format in pixels."""
SINTEL_MAX_DISPARITY = 1024.0
"""Exclusive upper bound of storable disparities."""

_EXPECTED = "an 8-bit RGB PNG with disparity = R*4 + G/2^6 + B/2^14"


def read_sintel_disparity(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a Sintel disparity PNG.

    Args:
        path: The ``.png`` file (``training/disparities/<scene>/frame_XXXX.png``).

    Returns:
        float32 ``(H, W)`` disparity in pixels.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SintelDisparityFormatError: Not a PNG, not 8-bit RGB (grey, RGBA, palette and 16-bit are rejected), or
            undecodable.
    """
    p = require_file(path, "Sintel disparity PNG")
    info = read_png_info(p)
    if info is None:
        raise SintelDisparityFormatError(p, f"not a PNG file (no PNG signature/IHDR); expected {_EXPECTED}")
    if info.bit_depth != 8 or info.colour_type != 2:
        raise SintelDisparityFormatError(p, f"is a {info.describe()} PNG; expected {_EXPECTED}")
    bgr = cv2.imread(os.fspath(p), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise SintelDisparityFormatError(
            p, f"PNG data could not be decoded (corrupt or truncated); expected {_EXPECTED}"
        )
    if bgr.dtype != np.uint8 or bgr.shape != (info.height, info.width, 3):
        raise SintelDisparityFormatError(
            p, f"decoded to {bgr.dtype} {bgr.shape}, expected uint8 ({info.height}, {info.width}, 3)"
        )
    b, g, r = (bgr[..., i].astype(np.uint32) for i in range(3))
    code = (r << 16) | (g << 8) | b
    return code.astype(np.float32) * np.float32(SINTEL_DISPARITY_STEP)


def write_sintel_disparity(path: str | os.PathLike[str], disp: np.ndarray) -> None:
    """Write a disparity map as a Sintel RGB PNG, creating parent folders.

    Each pixel is rounded to the nearest multiple of ``2**-14`` px (half to even), then split into R, G, B.

    Args:
        path: Destination ``.png`` file.
        disp: Float ``(H, W)`` disparity in pixels, finite, in ``[0, 1024)``.

    Raises:
        ValueError: ``path`` does not end in ``.png``, wrong shape or dtype, non-finite values, or values outside
            ``[0, 1024)`` (after rounding).
        OSError: OpenCV could not write the file.
    """
    if not os.fspath(path).lower().endswith(".png"):
        raise ValueError(f"`path` must end in .png for a Sintel disparity PNG, got {os.fspath(path)!r}")
    # Quantise from the caller's precision (float64 stays float64) so rounding happens once.
    d = np.asarray(check_float_map(disp, "disp", allowed_channels=(1,)), dtype=np.float64)
    finite = np.isfinite(d)
    if not finite.all():
        raise ValueError(
            f"`disp` has {int((~finite).sum())} non-finite values; the Sintel format has no invalid marker"
        )
    codes = np.rint(d * 2.0**_FRACTION_BITS)
    out_of_range = (d < 0) | (codes >= 2**24)
    if out_of_range.any():
        raise ValueError(
            f"`disp` has {int(out_of_range.sum())} values outside [0, {SINTEL_MAX_DISPARITY:g}) after "
            f"rounding to the 2^-14 grid (found range [{float(d.min()):.6g}, {float(d.max()):.6g}])"
        )
    code = codes.astype(np.uint32)
    bgr = np.stack([code & 0xFF, (code >> 8) & 0xFF, code >> 16], axis=-1).astype(np.uint8)
    p = make_parent(path)
    if not cv2.imwrite(os.fspath(p), bgr):
        raise OSError(f"{p}: OpenCV failed to write the RGB PNG")
