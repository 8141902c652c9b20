"""Exceptions raised when a file on disk does not match the format its reader expects.

Every reader in :mod:`lightning_hpml.datamodules.formats` raises a subclass of :class:`FormatError` for a file that
exists but is malformed, so that a data loader can catch one type, and a user sees which file is broken and what was
expected instead of a bare numpy or PIL traceback. ``FormatError`` derives from ``ValueError`` because the problem is
a bad value (the file's contents), not a missing resource; a missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "EXRFormatError",
    "FormatError",
    "ImageFormatError",
    "KittiDisparityFormatError",
    "PFMFormatError",
    "SintelDisparityFormatError",
]


class FormatError(ValueError):
    """A file exists but its contents do not follow the expected on-disk format.

    The message always starts with the file path, so a log line alone identifies the file to inspect.

    Args:
        path: The offending file.
        message: What was found and what was expected.

    Attributes:
        path: The offending file, as given.
        message: The message without the path prefix.
    """

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{os.fspath(path)}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # DataLoader workers pickle exceptions; the default reduction would call ``cls(str(self))`` and fail.
        return (type(self), (self.path, self.message))


class PFMFormatError(FormatError):
    """A ``.pfm`` file (Scene Flow, Middlebury, ETH3D disparity) is malformed."""


class KittiDisparityFormatError(FormatError):
    """A KITTI disparity PNG is not a single-channel 16-bit PNG."""


class SintelDisparityFormatError(FormatError):
    """An MPI Sintel disparity PNG is not an 8-bit RGB PNG."""


class EXRFormatError(FormatError):
    """An OpenEXR file (IRS disparity and normals) is malformed or uses a feature that cannot be decoded here."""


class ImageFormatError(FormatError):
    """An image file (stereo left/right view) cannot be decoded as an 8-bit colour or grey image."""
