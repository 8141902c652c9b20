"""Pictures for people: disparity and error colour maps, stereo panels, LiDAR bird's-eye views, PNG output.

Every function returns or takes ``uint8`` ``H x W x 3`` RGB arrays (rows top to bottom), the on-disk image
convention of this package.
"""

from __future__ import annotations

from lightning_hpml.viz.bev import bird_eye_view
from lightning_hpml.viz.disparity import (
    ERROR_BIN_COLORS,
    ERROR_BIN_EDGES,
    colorize_disparity,
    colorize_error,
    stereo_panel,
)
from lightning_hpml.viz.png import save_png

__all__ = [
    "ERROR_BIN_COLORS",
    "ERROR_BIN_EDGES",
    "bird_eye_view",
    "colorize_disparity",
    "colorize_error",
    "save_png",
    "stereo_panel",
]
