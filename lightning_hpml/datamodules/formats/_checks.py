"""Argument and path checks shared by the format readers and writers.

Writers accept arrays from user code, so every writer validates shape and dtype the same way and names the argument
in the message; readers turn a missing path into ``FileNotFoundError`` that names the file before any decoder gets
a chance to fail with a less helpful error (``cv2.imread`` returns ``None``, for instance).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

__all__ = ["as_float32_image", "as_valid_mask", "check_float_map", "make_parent", "read_file_bytes", "require_file"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    """Return ``path`` as a ``Path`` after checking that it names an existing regular file.

    Args:
        path: The file to read.
        what: A short description for the message, e.g. ``"PFM file"``.

    Raises:
        FileNotFoundError: Nothing exists at ``path``.
        IsADirectoryError: ``path`` is a directory.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, f"{what} not found", os.fspath(p))
    if p.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"expected a {what}, found a directory", os.fspath(p))
    return p


def read_file_bytes(path: str | os.PathLike[str], what: str) -> tuple[Path, bytes]:
    """Read a whole file after :func:`require_file`; returns the path and the bytes."""
    p = require_file(path, what)
    return p, p.read_bytes()


def make_parent(path: str | os.PathLike[str]) -> Path:
    """Create the parent folders of ``path`` so writers can target a fresh dataset tree; returns ``Path(path)``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def check_float_map(array: object, name: str, *, allowed_channels: tuple[int, ...] = (1, 3)) -> np.ndarray:
    """Check that ``array`` is a non-empty floating-point numpy array of shape (H, W) or (H, W, C); return it.

    Args:
        array: The user's array.
        name: The argument name, for messages.
        allowed_channels: Accepted channel counts; 1 means a 2-D (H, W) array.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: Wrong dtype, shape, or empty.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy array, got {type(array).__name__}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"`{name}` must be a floating-point array, got dtype {array.dtype}")
    shapes = []
    if 1 in allowed_channels:
        shapes.append("(H, W)")
    shapes += [f"(H, W, {c})" for c in allowed_channels if c != 1]
    expected = " or ".join(shapes)
    ok_2d = array.ndim == 2 and 1 in allowed_channels
    ok_3d = array.ndim == 3 and array.shape[2] in allowed_channels and array.shape[2] != 1
    if not (ok_2d or ok_3d):
        raise ValueError(f"`{name}` must have shape {expected}, got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {array.shape}")
    return array


def as_float32_image(array: object, name: str, *, allowed_channels: tuple[int, ...] = (1, 3)) -> np.ndarray:
    """Validate like :func:`check_float_map` and return the map as C-contiguous float32.

    float64 input is narrowed to float32; a finite value too large for float32 is an error rather than a silent
    ``inf``, because ``inf`` marks invalid pixels in PFM and EXR disparity files.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: Wrong dtype, shape, empty, or float32 overflow.
    """
    array = check_float_map(array, name, allowed_channels=allowed_channels)
    if array.dtype.itemsize > 4:
        finite = np.isfinite(array)
        too_big = finite & (np.abs(array) > _FLOAT32_MAX)
        if too_big.any():
            raise ValueError(
                f"`{name}` has {int(too_big.sum())} finite values beyond the float32 range "
                f"(max |x| = {float(np.abs(array[finite]).max()):.6g}); they cannot be stored as float32"
            )
    return np.ascontiguousarray(array, dtype=np.float32)


def as_valid_mask(valid: object, shape: tuple[int, ...], name: str = "valid") -> np.ndarray:
    """Validate an optional boolean validity mask against a disparity shape; ``None`` means all valid.

    Raises:
        TypeError: ``valid`` is not a numpy array.
        ValueError: Not boolean or a different shape.
    """
    if valid is None:
        return np.ones(shape, dtype=bool)
    if not isinstance(valid, np.ndarray):
        raise TypeError(f"`{name}` must be a boolean numpy array or None, got {type(valid).__name__}")
    if valid.dtype != np.bool_:
        raise ValueError(f"`{name}` must have dtype bool, got {valid.dtype}")
    if valid.shape != tuple(shape):
        raise ValueError(f"`{name}` must have the disparity's shape {tuple(shape)}, got {valid.shape}")
    return valid
