"""Write a visualisation (``uint8`` RGB or grey array) to a PNG file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["save_png"]


def save_png(path: str | Path, image: np.ndarray, overwrite: bool = False) -> Path:
    """Save ``image`` (``uint8`` ``H x W x 3`` RGB or ``H x W`` grey) as a PNG, creating parent folders.

    Why the checks: PIL silently reinterprets float or 16-bit arrays (or writes a mode the viewer does not expect),
    and an existing picture, e.g. from an earlier run, is not replaced unless asked.

    Args:
        path: Output file; must end in ``.png``.
        image: The picture, e.g. from :func:`lightning_hpml.viz.stereo_panel`.
        overwrite: Replace an existing file.

    Returns:
        The path written.

    Raises:
        TypeError: If ``image`` is not a uint8 NumPy array.
        ValueError: If the shape is not ``H x W x 3`` / ``H x W`` or ``path`` does not end in ``.png``.
        FileExistsError: If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_png: {path} must end in '.png'")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        found = f"dtype {image.dtype}" if isinstance(image, np.ndarray) else f"type {type(image).__name__}"
        raise TypeError(f"save_png: {path}: image must be a uint8 numpy array, got {found}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        raise ValueError(f"save_png: {path}: image must have shape H x W x 3 or H x W (non-empty), got {image.shape}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"save_png: {path} already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")
    return path
