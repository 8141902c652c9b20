"""KITTI 2012/2015 disparity PNG: 16-bit grey, ``disparity = value / 256``, ``value == 0`` marks an invalid pixel.

This is the format of ``disp_occ_0``/``disp_noc_0`` (2015), ``disp_occ``/``disp_noc`` (2012) and of KITTI benchmark
submissions. The reader rejects anything that is not a single-channel 16-bit PNG (an 8-bit or RGB PNG would decode,
but to a disparity 256 times too small or with the wrong meaning), and the writer refuses values that would not read
back as written: out of the 16-bit range, or so small that they round to the invalid marker 0.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from lightning_hpml.datamodules.formats._checks import as_valid_mask, check_float_map, make_parent, require_file
from lightning_hpml.datamodules.formats._png import read_png_info
from lightning_hpml.datamodules.formats.errors import KittiDisparityFormatError

__all__ = [
    "KITTI_DISPARITY_SCALE",
    "KITTI_MAX_DISPARITY",
    "encode_kitti_disparity",
    "read_kitti_disparity",
    "write_kitti_disparity",
]

KITTI_DISPARITY_SCALE = 256.0
"""Stored value per pixel of disparity."""
KITTI_MAX_DISPARITY = 65535.0 / KITTI_DISPARITY_SCALE
"""Largest disparity a 16-bit PNG can hold (about 255.996 px)."""

_EXPECTED = "a 16-bit single-channel (grey) PNG with value = disparity * 256 and 0 = invalid"


def read_kitti_disparity(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI disparity PNG.

    Args:
        path: The ``.png`` file.

    Returns:
        ``(disparity, valid)``: float32 ``(H, W)`` in pixels (0 where invalid) and bool ``(H, W)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KittiDisparityFormatError: Not a PNG, not 16-bit grey, or undecodable (corrupt or truncated).
    """
    p = require_file(path, "KITTI disparity PNG")
    info = read_png_info(p)
    if info is None:
        raise KittiDisparityFormatError(p, f"not a PNG file (no PNG signature/IHDR); expected {_EXPECTED}")
    if info.bit_depth != 16 or info.colour_type != 0:
        raise KittiDisparityFormatError(p, f"is a {info.describe()} PNG; expected {_EXPECTED}")
    raw = cv2.imread(os.fspath(p), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise KittiDisparityFormatError(
            p, f"PNG data could not be decoded (corrupt or truncated); expected {_EXPECTED}"
        )
    if raw.dtype != np.uint16 or raw.ndim != 2 or raw.shape != (info.height, info.width):
        raise KittiDisparityFormatError(
            p, f"decoded to {raw.dtype} {raw.shape}, expected uint16 ({info.height}, {info.width})"
        )
    disparity = raw.astype(np.float32) / np.float32(KITTI_DISPARITY_SCALE)
    return disparity, raw > 0


def encode_kitti_disparity(disp: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Encode a disparity map as the uint16 array a KITTI PNG stores (see :func:`write_kitti_disparity`)."""
    # Quantise from the caller's precision (float64 stays float64) so rounding happens once.
    d = np.asarray(check_float_map(disp, "disp", allowed_channels=(1,)), dtype=np.float64)
    finite = np.isfinite(d)
    if valid is not None:
        v = as_valid_mask(valid, d.shape)
        bad = v & ~finite
        if bad.any():
            raise ValueError(
                f"`disp` is non-finite at {int(bad.sum())} pixels that `valid` marks valid; mark them "
                "invalid or give finite disparities"
            )
        mask = v
    else:
        mask = finite
    values = d[mask]
    if values.size:
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > KITTI_MAX_DISPARITY:
            n_out = int(((values < 0.0) | (values > KITTI_MAX_DISPARITY)).sum())
            raise ValueError(
                f"`disp` has {n_out} valid pixels outside [0, {KITTI_MAX_DISPARITY:.6f}] (found range "
                f"[{low:.6g}, {high:.6g}]); a KITTI 16-bit PNG cannot store them"
            )
    codes = np.rint(values * KITTI_DISPARITY_SCALE)
    zero = codes == 0
    if zero.any():
        raise ValueError(
            f"`disp` has {int(zero.sum())} valid pixels with disparity below 1/512 px (smallest "
            f"{float(values[zero].min()):.6g}); they would be stored as 0, which KITTI reads as invalid. "
            "Mark them invalid with `valid` instead"
        )
    out = np.zeros(d.shape, dtype=np.uint16)
    out[mask] = codes.astype(np.uint16)
    return out


def write_kitti_disparity(path: str | os.PathLike[str], disp: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write a disparity map as a KITTI 16-bit PNG, creating parent folders.

    Each valid pixel is stored as ``round(disp * 256)`` (round half to even), so a disparity on the 1/256 grid reads
    back exactly; invalid pixels are stored as 0.

    Args:
        path: Destination ``.png`` file.
        disp: Float ``(H, W)`` disparity in pixels.
        valid: Optional bool ``(H, W)``; ``None`` means every finite pixel is valid and non-finite pixels are
            invalid. A pixel marked valid must be finite.

    Raises:
        ValueError: ``path`` does not end in ``.png``; wrong shape or dtype; a valid disparity is negative, above
            65535/256, below 1/512 (it would read back as invalid), or non-finite.
        OSError: OpenCV could not write the file.
    """
    if not os.fspath(path).lower().endswith(".png"):
        raise ValueError(f"`path` must end in .png for a KITTI disparity PNG, got {os.fspath(path)!r}")
    encoded = encode_kitti_disparity(disp, valid)
    p = make_parent(path)
    if not cv2.imwrite(os.fspath(p), encoded):
        raise OSError(f"{p}: OpenCV failed to write the 16-bit PNG")
