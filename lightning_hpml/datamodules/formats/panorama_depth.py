"""Depth maps of the panorama datasets: 16-bit PNG with a per-dataset scale, or float EXR in metres.

- Stanford2D3D (``area_N/pano/depth/*_depth.png``): uint16, metres = value / 512, 65535 = no depth.
- Matterport3D as stitched by UniFuse (``<house>/pano_depth/*.png``): uint16, metres = value / 4000, 0 = no depth.
- 3D60 (``*_depth_0_Left_Down_0.0.exr``): float32 EXR in metres (read with OpenCV through
  :mod:`~lightning_hpml.datamodules.formats.exr`); non-finite or non-positive values = no depth.

Readers return ``(depth, valid)`` with depth 0 where invalid, as every other ground-truth reader here; the 10 m cut
of the panorama benchmarks is the DataModule's job, not the reader's.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from lightning_hpml.datamodules.formats._checks import make_parent, require_file
from lightning_hpml.datamodules.formats._png import read_png_info
from lightning_hpml.datamodules.formats.errors import FormatError
from lightning_hpml.datamodules.formats.exr import read_exr, write_exr

__all__ = [
    "MATTERPORT3D_DEPTH_SCALE",
    "STANFORD2D3D_DEPTH_SCALE",
    "PanoramaDepthFormatError",
    "read_depth_exr",
    "read_depth_png",
    "write_depth_exr",
    "write_depth_png",
]

STANFORD2D3D_DEPTH_SCALE = 512.0
MATTERPORT3D_DEPTH_SCALE = 4000.0


class PanoramaDepthFormatError(FormatError):
    """A panorama depth PNG is not single-channel 16-bit, or a depth EXR has more than one channel."""


def read_depth_png(path: str | os.PathLike[str], scale: float, invalid_value: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a 16-bit depth PNG: ``(depth in metres, float32 (H, W); valid, bool (H, W))``.

    Args:
        scale: Stored units per metre (512 for Stanford2D3D, 4000 for Matterport3D).
        invalid_value: The stored value that marks "no depth" (65535 for Stanford2D3D, 0 for Matterport3D).
    """
    p = require_file(path, "depth PNG")
    expected = f"a 16-bit single-channel PNG with value = metres * {scale:g} and {invalid_value} = no depth"
    info = read_png_info(p)
    if info is None:
        raise PanoramaDepthFormatError(p, f"not a PNG file; expected {expected}")
    if info.bit_depth != 16 or info.colour_type != 0:
        raise PanoramaDepthFormatError(p, f"is a {info.describe()} PNG; expected {expected}")
    raw = cv2.imread(os.fspath(p), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise PanoramaDepthFormatError(p, f"PNG data could not be decoded as 16-bit grey; expected {expected}")
    valid = (raw != invalid_value) & (raw > 0)
    depth = np.where(valid, raw.astype(np.float32) / np.float32(scale), np.float32(0))
    return depth, valid


def write_depth_png(
    path: str | os.PathLike[str], depth: np.ndarray, valid: np.ndarray, scale: float, invalid_value: int
) -> None:
    """Write metres as a 16-bit PNG; refuses depths that would not read back (out of range or rounding to 0)."""
    depth = np.asarray(depth, dtype=np.float64)
    stored = np.rint(depth * scale)
    limit = 65534 if invalid_value == 65535 else 65535
    bad = valid & ((stored < 1) | (stored > limit) | ~np.isfinite(depth))
    if bad.any():
        raise ValueError(
            f"{os.fspath(path)}: {int(bad.sum())} valid depths do not fit a 16-bit PNG at scale {scale:g} "
            f"(range {1 / scale:g}..{limit / scale:g} m)"
        )
    out = np.where(valid, stored, invalid_value).astype(np.uint16)
    make_parent(path)
    if not cv2.imwrite(os.fspath(path), out):
        raise OSError(f"{os.fspath(path)}: OpenCV could not write the PNG file")


def read_depth_exr(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a one-channel float depth EXR (3D60): ``(depth in metres, valid)``."""
    depth = read_exr(path)
    if depth.ndim == 3:  # OpenCV returns single-channel EXR written by some tools as three equal channels
        if not (
            np.allclose(depth[..., 0], depth[..., 1], equal_nan=True)
            and np.allclose(depth[..., 0], depth[..., 2], equal_nan=True)
        ):
            raise PanoramaDepthFormatError(path, "has three different channels; expected one depth channel")
        depth = depth[..., 0]
    valid = np.isfinite(depth) & (depth > 0)
    return np.where(valid, depth, 0).astype(np.float32), valid


def write_depth_exr(path: str | os.PathLike[str], depth: np.ndarray, valid: np.ndarray) -> None:
    """Write metres as a one-channel float EXR; invalid pixels are stored as ``inf``, which reads back invalid."""
    write_exr(path, np.where(valid, depth, np.inf).astype(np.float32))
