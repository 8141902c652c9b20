"""nerfstudio's ``transforms.json`` (the layout Nerfbusters is distributed in), read and written.

Layout (docs.nerf.studio, "Data conventions")::

    {"camera_model": "OPENCV", "fl_x": ..., "fl_y": ..., "cx": ..., "cy": ..., "w": ..., "h": ...,
     "k1": 0, "k2": 0, "p1": 0, "p2": 0,
     "frames": [{"file_path": "images/frame_00001.png", "transform_matrix": [[...4x4 camera-to-world...]]}, ...]}

Intrinsics may also be given per frame (the frame's keys override the top-level ones). ``transform_matrix`` uses the
OpenGL camera convention (+x right, +y up, +z backwards); :func:`opengl_to_opencv` flips the camera's y and z axes to
get the OpenCV/COLMAP convention (+y down, +z forward) that the rest of the package uses.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightning_hpml.datamodules.formats._checks import make_parent, require_file
from lightning_hpml.datamodules.formats.errors import FormatError

__all__ = [
    "NerfstudioFormatError",
    "NerfstudioFrame",
    "opengl_to_opencv",
    "read_transforms_json",
    "write_transforms_json",
]

_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


class NerfstudioFormatError(FormatError):
    """A ``transforms.json`` does not follow nerfstudio's layout."""


@dataclass
class NerfstudioFrame:
    """One frame: image path (resolved against the json's folder), OpenGL camera-to-world, intrinsics, size."""

    file_path: Path
    camera_to_world: np.ndarray
    intrinsic: np.ndarray
    width: int
    height: int
    distortion: dict[str, float] = field(default_factory=dict)


def opengl_to_opencv(camera_to_world: np.ndarray) -> np.ndarray:
    """Camera-to-world (..., 4, 4) with OpenGL camera axes -> OpenCV axes (and back: the flip is its own inverse)."""
    return np.asarray(camera_to_world) @ _FLIP_YZ


def _number(path: Path, entry: dict, key: str, where: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NerfstudioFormatError(path, f"{where} {key!r} is {value!r}; expected a finite number")
    return float(value)


def read_transforms_json(path: str | os.PathLike[str]) -> list[NerfstudioFrame]:
    """Frames of a ``transforms.json`` in file order. Image paths are resolved relative to the json's folder."""
    p = require_file(path, "nerfstudio transforms.json")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NerfstudioFormatError(p, f"is not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise NerfstudioFormatError(p, "has no non-empty 'frames' list")
    frames = []
    for index, entry in enumerate(data["frames"]):
        where = f"frame {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("file_path"), str):
            raise NerfstudioFormatError(p, f"{where} has no 'file_path' string")
        merged = {k: data[k] for k in (*_INTRINSIC_KEYS, *_DISTORTION_KEYS) if k in data}
        merged.update({k: entry[k] for k in (*_INTRINSIC_KEYS, *_DISTORTION_KEYS) if k in entry})
        missing = [k for k in _INTRINSIC_KEYS if k not in merged]
        if missing:
            raise NerfstudioFormatError(p, f"{where} has no {missing} (neither in the frame nor at the top level)")
        fx, fy, cx, cy = (_number(p, merged, k, where) for k in ("fl_x", "fl_y", "cx", "cy"))
        width, height = (_number(p, merged, k, where) for k in ("w", "h"))
        if width <= 0 or height <= 0 or width != int(width) or height != int(height):
            raise NerfstudioFormatError(p, f"{where} image size {width}x{height} is not a positive integer size")
        matrix = np.asarray(entry.get("transform_matrix"), dtype=object)
        if matrix.shape not in ((4, 4), (3, 4)):
            raise NerfstudioFormatError(
                p, f"{where} 'transform_matrix' has shape {matrix.shape}; expected 4x4 (or 3x4)"
            )
        try:
            matrix = matrix.astype(np.float64)
        except (TypeError, ValueError):
            raise NerfstudioFormatError(p, f"{where} 'transform_matrix' is not numeric") from None
        if matrix.shape == (3, 4):
            matrix = np.vstack([matrix, [0, 0, 0, 1]])
        rotation = matrix[:3, :3]
        if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-4) or np.linalg.det(rotation) < 0:
            raise NerfstudioFormatError(p, f"{where} 'transform_matrix' rotation is not a proper rotation")
        frames.append(
            NerfstudioFrame(
                file_path=(p.parent / entry["file_path"]).resolve(),
                camera_to_world=matrix,
                intrinsic=np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]),
                width=int(width),
                height=int(height),
                distortion={k: _number(p, merged, k, where) for k in _DISTORTION_KEYS if k in merged},
            )
        )
    return frames


def write_transforms_json(path: str | os.PathLike[str], frames: list[NerfstudioFrame]) -> None:
    """Write ``frames`` (shared intrinsics at the top level when all frames agree, else per frame)."""
    if not frames:
        raise ValueError("write_transforms_json needs at least one frame")
    root = Path(path).parent.resolve()

    def intrinsics(frame: NerfstudioFrame) -> dict:
        k = frame.intrinsic
        return {
            "fl_x": float(k[0, 0]),
            "fl_y": float(k[1, 1]),
            "cx": float(k[0, 2]),
            "cy": float(k[1, 2]),
            "w": frame.width,
            "h": frame.height,
            **frame.distortion,
        }

    shared = intrinsics(frames[0])
    per_frame = any(intrinsics(f) != shared for f in frames)
    data: dict = {"camera_model": "OPENCV"}
    if not per_frame:
        data.update(shared)
    data["frames"] = []
    for frame in frames:
        file_path = Path(frame.file_path)
        relative = os.path.relpath(file_path.resolve(), root) if file_path.is_absolute() else file_path.as_posix()
        entry = {"file_path": Path(relative).as_posix(), "transform_matrix": np.asarray(frame.camera_to_world).tolist()}
        if per_frame:
            entry.update(intrinsics(frame))
        data["frames"].append(entry)
    make_parent(path)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
