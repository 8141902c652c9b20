"""COLMAP's text model (``cameras.txt``, ``images.txt``, ``points3D.txt``) for PINHOLE cameras, read and written.

``images.txt`` stores world-to-camera poses: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` followed by one line
of 2-D points (left empty here); ``cameras.txt`` ``CAMERA_ID PINHOLE WIDTH HEIGHT fx fy cx cy``. This is the export
CF-NeRF's evaluation reads (``export_colmap.py``), with an empty ``points3D.txt``. Quaternions are Hamilton,
scalar first, as COLMAP writes them (conversion via :mod:`scipy.spatial.transform`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from lightning_hpml.datamodules.formats._checks import require_file
from lightning_hpml.datamodules.formats.errors import FormatError

__all__ = ["ColmapFormatError", "ColmapImage", "read_colmap_text", "write_colmap_text"]


class ColmapFormatError(FormatError):
    """A COLMAP text model file does not follow COLMAP's layout."""


@dataclass
class ColmapImage:
    """One registered image: name, world-to-camera (4, 4), PINHOLE intrinsics (3, 3) and image size."""

    name: str
    world_to_camera: np.ndarray
    intrinsic: np.ndarray
    width: int
    height: int


def write_colmap_text(folder: str | os.PathLike[str], images: list[ColmapImage], overwrite: bool = False) -> Path:
    """Write ``cameras.txt`` (one camera per distinct intrinsics), ``images.txt`` and an empty ``points3D.txt``."""
    out = Path(folder)
    targets = [out / name for name in ("cameras.txt", "images.txt", "points3D.txt")]
    if not overwrite and any(t.exists() for t in targets):
        raise FileExistsError(f"{out} already holds a COLMAP model; pass overwrite=True to replace it")
    out.mkdir(parents=True, exist_ok=True)
    cameras: dict[tuple, int] = {}
    image_rows = ["# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    for image_id, image in enumerate(images, start=1):
        k = image.intrinsic
        key = (image.width, image.height, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
        camera_id = cameras.setdefault(key, len(cameras) + 1)
        x, y, z, w = Rotation.from_matrix(image.world_to_camera[:3, :3]).as_quat()
        t = image.world_to_camera[:3, 3]
        values = " ".join(f"{v:.17g}" for v in (w, x, y, z, *t))
        image_rows += [f"{image_id} {values} {camera_id} {image.name}", ""]
    camera_rows = ["# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    camera_rows += [
        f"{cid} PINHOLE {w} {h} {fx:.17g} {fy:.17g} {cx:.17g} {cy:.17g}"
        for (w, h, fx, fy, cx, cy), cid in cameras.items()
    ]
    targets[0].write_text("\n".join(camera_rows) + "\n", encoding="utf-8")
    targets[1].write_text("\n".join(image_rows) + "\n", encoding="utf-8")
    targets[2].write_text("# 3D point list (empty: cameras only)\n", encoding="utf-8")
    return out


def _fields(path: Path, line_number: int, line: str, count: int, what: str) -> list[str]:
    fields = line.split()
    if len(fields) < count:
        raise ColmapFormatError(path, f"line {line_number} {line!r}: expected {what}")
    return fields


def read_colmap_text(folder: str | os.PathLike[str]) -> list[ColmapImage]:
    """Images of a COLMAP text model (PINHOLE and SIMPLE_PINHOLE cameras), in ``images.txt`` order."""
    folder = Path(folder)
    cameras_path = require_file(folder / "cameras.txt", "COLMAP cameras.txt")
    images_path = require_file(folder / "images.txt", "COLMAP images.txt")
    cameras = {}
    for number, line in enumerate(cameras_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = _fields(cameras_path, number, line, 4, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS")
        model, params = fields[1], fields[4:]
        try:
            values = [float(v) for v in params]
            width, height = int(fields[2]), int(fields[3])
        except ValueError:
            raise ColmapFormatError(cameras_path, f"line {number} {line!r}: non-numeric size or parameters") from None
        if model == "PINHOLE" and len(values) == 4:
            fx, fy, cx, cy = values
        elif model == "SIMPLE_PINHOLE" and len(values) == 3:
            fx, cx, cy = values
            fy = fx
        else:
            raise ColmapFormatError(
                cameras_path,
                f"line {number}: camera model {model} with {len(values)} parameters; expected PINHOLE "
                "(fx fy cx cy) or SIMPLE_PINHOLE (f cx cy)",
            )
        cameras[fields[0]] = (np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), width, height)
    lines = [
        (number, line)
        for number, line in enumerate(images_path.read_text(encoding="utf-8").splitlines(), start=1)
        if not line.startswith("#")
    ]
    images = []
    for index in range(0, len(lines), 2):
        number, line = lines[index]
        if not line.strip():
            continue
        fields = _fields(images_path, number, line, 10, "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(v) for v in fields[1:8])
        except ValueError:
            raise ColmapFormatError(images_path, f"line {number} {line!r}: non-numeric pose") from None
        if fields[8] not in cameras:
            raise ColmapFormatError(images_path, f"line {number}: camera {fields[8]} is not in cameras.txt")
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
        pose[:3, 3] = (tx, ty, tz)
        intrinsic, width, height = cameras[fields[8]]
        images.append(ColmapImage(" ".join(fields[9:]), pose, intrinsic.copy(), width, height))
    return images
