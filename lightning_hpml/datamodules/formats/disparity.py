"""One entry point for ground-truth disparity files, whichever dataset wrote them.

Stereo loaders get lists of disparity paths whose format follows from the file: ``.pfm`` (Scene Flow, Middlebury,
ETH3D), ``.png`` (KITTI 16-bit grey or MPI Sintel 8-bit RGB, told apart by the PNG header, not by folder names) and
``.exr`` (IRS). Each reader returns the same pair, float32 disparity and a bool validity mask, so a loader needs no
per-dataset branch:

========  =========================================  ==========================================
suffix    disparity                                  valid
========  =========================================  ==========================================
``.pfm``  float values, rows flipped to top-down      finite (Middlebury/ETH3D store ``inf``)
``.png``  16-bit grey: value / 256 (KITTI)            value > 0
``.png``  8-bit RGB: R*4 + G/2^6 + B/2^14 (Sintel)    disparity > 0
``.exr``  the one channel (IRS: ``G``)                finite
========  =========================================  ==========================================

:func:`write_disparity` is the inverse for the formats that can mark invalid pixels: PFM and EXR store ``inf``
there (as Middlebury does), PNG uses KITTI's 0, so ``read_disparity(write_disparity(...))`` returns the same mask.
"""

from __future__ import annotations

import os

import numpy as np

from lightning_hpml.datamodules.formats._checks import as_float32_image, as_valid_mask, require_file
from lightning_hpml.datamodules.formats._png import read_png_info
from lightning_hpml.datamodules.formats.errors import EXRFormatError, FormatError, PFMFormatError
from lightning_hpml.datamodules.formats.exr import read_exr, write_exr
from lightning_hpml.datamodules.formats.kitti_png import read_kitti_disparity, write_kitti_disparity
from lightning_hpml.datamodules.formats.pfm import read_pfm, write_pfm
from lightning_hpml.datamodules.formats.sintel_png import read_sintel_disparity

__all__ = ["DISPARITY_SUFFIXES", "read_disparity", "write_disparity"]

DISPARITY_SUFFIXES = (".pfm", ".png", ".exr")
"""File suffixes :func:`read_disparity` accepts (case-insensitive)."""

_ACCEPTED = ".pfm (Scene Flow, Middlebury, ETH3D), .png (KITTI 16-bit grey or MPI Sintel 8-bit RGB) and .exr (IRS)"
_PNG_KINDS = "16-bit grey (KITTI: value/256, 0 = invalid) or 8-bit RGB (MPI Sintel: R*4 + G/2^6 + B/2^14)"


def read_disparity(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a ground-truth disparity file of any supported dataset.

    Args:
        path: A ``.pfm``, ``.png`` or ``.exr`` file.

    Returns:
        ``(disparity, valid)``: float32 ``(H, W)`` in pixels with rows top-to-bottom, and bool ``(H, W)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: Unsupported suffix, or a PNG that is neither KITTI nor Sintel kind; the format's own subclass
            (``PFMFormatError``, ``EXRFormatError``, ...) for a malformed file or a 3-channel map.
    """
    p = require_file(path, "disparity file")
    suffix = p.suffix.lower()
    if suffix == ".pfm":
        disparity = read_pfm(p)
        if disparity.ndim != 2:
            raise PFMFormatError(p, "is a 3-channel PFM ('PF'); a disparity map is a 1-channel PFM ('Pf')")
        return disparity, np.isfinite(disparity)
    if suffix == ".png":
        info = read_png_info(p)
        if info is None:
            raise FormatError(p, f"not a PNG file (no PNG signature/IHDR); a disparity PNG is {_PNG_KINDS}")
        if info.bit_depth == 16 and info.colour_type == 0:
            return read_kitti_disparity(p)
        if info.bit_depth == 8 and info.colour_type == 2:
            disparity = read_sintel_disparity(p)
            return disparity, disparity > 0
        raise FormatError(p, f"is a {info.describe()} PNG; a disparity PNG is {_PNG_KINDS}")
    if suffix == ".exr":
        disparity = read_exr(p)
        if disparity.ndim != 2:
            raise EXRFormatError(p, "has channels R, G, B; a disparity map has a single channel (IRS names it 'G')")
        return disparity, np.isfinite(disparity)
    raise FormatError(p, f"unsupported disparity file suffix {p.suffix!r}; accepted: {_ACCEPTED}")


def write_disparity(path: str | os.PathLike[str], disp: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write a disparity map in the format named by the suffix, creating parent folders.

    ``.pfm`` (little-endian) and ``.exr`` (one FLOAT channel, named ``Y`` by OpenCV; IRS's ``G`` reads the same)
    store ``inf`` at invalid pixels; ``.png`` writes a KITTI 16-bit PNG (see :func:`write_kitti_disparity` for its
    range limits). The Sintel format is not written here because it has no invalid marker; use
    ``write_sintel_disparity``.

    Args:
        path: Destination ``.pfm``, ``.png`` or ``.exr`` file.
        disp: Float ``(H, W)`` disparity in pixels.
        valid: Optional bool ``(H, W)``; ``None`` keeps ``disp`` as it is (non-finite pixels read back as
            invalid). A pixel marked valid must be finite.

    Raises:
        ValueError: Unsupported suffix, bad ``disp``/``valid``, a non-finite pixel marked valid, or (``.png``) a
            disparity KITTI cannot store.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".png":
        write_kitti_disparity(path, disp, valid)
        return
    if suffix not in (".pfm", ".exr"):
        raise ValueError(
            f"`path` {os.fspath(path)!r} has suffix {suffix!r}; write_disparity writes .pfm, .png "
            "(KITTI 16-bit) and .exr"
        )
    values = as_float32_image(disp, "disp", allowed_channels=(1,))
    if valid is not None:
        mask = as_valid_mask(valid, values.shape)
        bad = mask & ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"`disp` is non-finite at {int(bad.sum())} pixels that `valid` marks valid")
        values = np.where(mask, values, np.float32(np.inf))
    if suffix == ".pfm":
        write_pfm(path, values)
    else:
        write_exr(path, values)
