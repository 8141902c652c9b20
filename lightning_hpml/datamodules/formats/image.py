"""Stereo views on disk (PNG for Scene Flow, KITTI, Sintel, IRS; JPEG elsewhere) as uint8 RGB arrays.

Pillow decodes the file; every 8-bit layout a dataset may use is brought to ``(H, W, 3)`` RGB: grey is replicated
(KITTI 2012 ``image_0``), an alpha channel is dropped (some RGBA PNG renders), palette images are expanded.
Images with more than 8 bits per sample (16-bit PNG, float TIFF) are rejected rather than rescaled, because the
right scaling depends on the dataset. EXIF orientation tags are not applied: stereo datasets store rectified views
as they are, and rotating one view would break the rectification.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from lightning_hpml.datamodules.formats._checks import make_parent, require_file
from lightning_hpml.datamodules.formats.errors import ImageFormatError

__all__ = ["read_rgb", "write_rgb"]

# Pillow modes holding at most 8 bits per sample, all of which convert to RGB without rescaling.
_EIGHT_BIT_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr"}


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as uint8 ``(H, W, 3)`` RGB with rows top-to-bottom.

    Args:
        path: Any image file Pillow can decode (PNG, JPEG, BMP, PPM, WebP, ...).

    Returns:
        A C-contiguous uint8 array.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageFormatError: The file is not an image, is corrupt or truncated, or has more than 8 bits per sample.
    """
    p = require_file(path, "image file")
    try:
        with Image.open(p) as im:
            mode = im.mode
            if mode not in _EIGHT_BIT_MODES:
                raise ImageFormatError(
                    p,
                    f"image mode {mode!r} (more than 8 bits per sample or unsupported); "
                    "expected an 8-bit RGB, RGBA, grey or palette image",
                )
            im.load()
            rgb = im if mode == "RGB" else im.convert("RGB")
            array = np.array(rgb, dtype=np.uint8, order="C", copy=True)
    except ImageFormatError:
        raise
    except UnidentifiedImageError:
        raise ImageFormatError(
            p, "not a recognised image file; expected an 8-bit RGB/grey image such as PNG or JPEG"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        # Pillow raises OSError for truncated data, SyntaxError/ValueError for broken headers or chunks.
        raise ImageFormatError(p, f"image data could not be decoded ({type(err).__name__}: {err})") from err
    return array


def write_rgb(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 ``(H, W, 3)`` RGB array as an image, creating parent folders.

    The format follows the suffix (``.png`` is lossless and what the stereo datasets use; ``.jpg`` is lossy).

    Args:
        path: Destination file; its suffix selects the format.
        array: uint8 ``(H, W, 3)`` RGB.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: ``array`` is not uint8 ``(H, W, 3)`` with H, W > 0, or the suffix names no format Pillow can
            write.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"`array` must be a numpy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ValueError(f"`array` must have dtype uint8, got {array.dtype}")
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"`array` must have shape (H, W, 3) with H, W > 0, got {array.shape}")
    p = make_parent(path)
    image = Image.fromarray(np.ascontiguousarray(array))
    try:
        image.save(p)
    except ValueError as err:
        # Pillow: "unknown file extension". Remove a file it may have created before failing.
        if p.exists() and p.stat().st_size == 0:
            p.unlink()
        raise ValueError(f"`path` {os.fspath(p)!r}: cannot choose an image format from its suffix ({err})") from err
