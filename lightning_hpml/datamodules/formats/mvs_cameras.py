"""MVSNet-format cameras and view pairs (DTU, Tanks and Temples, BlendedMVS as preprocessed for MVS networks).

``<view>_cam.txt`` (YoYo000/MVSNet README)::

    extrinsic
    r11 r12 r13 t1        <- 4x4 world-to-camera matrix
    ...
    0 0 0 1
    <blank>
    intrinsic
    fx 0 cx               <- 3x3 pixel intrinsics of the image the file belongs to
    0 fy cy
    0 0 1
    <blank>
    DEPTH_MIN DEPTH_INTERVAL [DEPTH_NUM DEPTH_MAX]

On DTU the second depth field is the interval (mm); in IterMVS's ``cams_1`` and Tanks-and-Temples files it is the
maximum depth, so the reader is told which (``second_field``). ``pair.txt``: the number of views, then for each
reference view a line with its id and a line ``N id0 score0 id1 score1 ...`` (best source views first).
When images are resized or cropped, :func:`scale_intrinsics` and :func:`crop_intrinsics` keep K consistent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_hpml.datamodules.formats._checks import make_parent, require_file
from lightning_hpml.datamodules.formats.errors import FormatError

__all__ = [
    "MVSCamera",
    "MVSCameraFormatError",
    "crop_intrinsics",
    "downsample_intrinsics",
    "read_cam_txt",
    "read_pair_txt",
    "scale_intrinsics",
    "write_cam_txt",
    "write_pair_txt",
]


class MVSCameraFormatError(FormatError):
    """A ``*_cam.txt`` or ``pair.txt`` file does not follow the MVSNet layout."""


@dataclass
class MVSCamera:
    """One view's camera: world-to-camera ``extrinsic`` (4, 4), ``intrinsic`` (3, 3), and the depth line."""

    extrinsic: np.ndarray
    intrinsic: np.ndarray
    depth_min: float
    depth_interval: float | None = None
    depth_num: int | None = None
    depth_max: float | None = None

    def depth_range(self, num_depth: int = 192, interval_scale: float = 1.06) -> tuple[float, float]:
        """``(min, max)``: the file's maximum if it has one, else MVSNet's ``min + scale * interval * (n - 1)``."""
        if self.depth_max is not None:
            return self.depth_min, self.depth_max
        return self.depth_min, self.depth_min + interval_scale * self.depth_interval * (num_depth - 1)


def _numbers(path: Path, lines: list[str], index: int, count: int, what: str) -> list[float]:
    if index >= len(lines):
        raise MVSCameraFormatError(path, f"ends before line {index + 1}; expected {what}")
    fields = lines[index].split()
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise MVSCameraFormatError(path, f"line {index + 1} {lines[index]!r}: expected {what}") from None
    if len(values) != count:
        raise MVSCameraFormatError(path, f"line {index + 1} has {len(values)} numbers; expected {what}")
    return values


def read_cam_txt(path: str | os.PathLike[str], second_field: str = "interval") -> MVSCamera:
    """Read one ``*_cam.txt``. ``second_field``: ``"interval"`` (DTU) or ``"max"`` (cams_1, Tanks and Temples)."""
    if second_field not in ("interval", "max"):
        raise ValueError(f"`second_field` must be 'interval' or 'max', got {second_field!r}")
    p = require_file(path, "MVSNet camera file")
    lines = [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]  # blank lines are separators only
    if not lines or lines[0].lower() != "extrinsic":
        raise MVSCameraFormatError(p, f"first line is {lines[0] if lines else ''!r}; expected 'extrinsic'")
    extrinsic = np.array([_numbers(p, lines, 1 + r, 4, "4 numbers of the 4x4 extrinsic") for r in range(4)])
    if len(lines) < 6 or lines[5].lower() != "intrinsic":
        found = lines[5] if len(lines) > 5 else "end of file"
        raise MVSCameraFormatError(p, f"found {found!r} after the extrinsic; expected 'intrinsic'")
    intrinsic = np.array([_numbers(p, lines, 6 + r, 3, "3 numbers of the 3x3 intrinsic") for r in range(3)])
    if not np.allclose(extrinsic[3], [0, 0, 0, 1]):
        raise MVSCameraFormatError(p, f"extrinsic last row is {extrinsic[3].tolist()}; expected [0, 0, 0, 1]")
    if len(lines) < 10:
        raise MVSCameraFormatError(p, "has no depth line; expected 'DEPTH_MIN DEPTH_INTERVAL [DEPTH_NUM DEPTH_MAX]'")
    fields = lines[9].split()
    try:
        depth = [float(f) for f in fields]
    except ValueError:
        raise MVSCameraFormatError(p, f"depth line {lines[9]!r} is not numeric") from None
    if len(depth) not in (2, 3, 4):
        raise MVSCameraFormatError(p, f"depth line has {len(depth)} numbers; expected 2 to 4")
    camera = MVSCamera(extrinsic, intrinsic, depth[0])
    if second_field == "max":
        camera.depth_max = depth[1]
    else:
        camera.depth_interval = depth[1]
        if len(depth) >= 3:
            camera.depth_num = int(depth[2])
        if len(depth) == 4:
            camera.depth_max = depth[3]
    return camera


def write_cam_txt(path: str | os.PathLike[str], camera: MVSCamera) -> None:
    """Write ``camera`` in the layout :func:`read_cam_txt` reads (depth line as the fields present)."""
    rows = ["extrinsic", *(" ".join(f"{v:.10g}" for v in row) for row in camera.extrinsic), ""]
    rows += ["intrinsic", *(" ".join(f"{v:.10g}" for v in row) for row in camera.intrinsic), ""]
    second = camera.depth_interval if camera.depth_interval is not None else camera.depth_max
    depth = [camera.depth_min, second]
    if camera.depth_interval is not None and camera.depth_num is not None:
        depth.append(camera.depth_num)
        if camera.depth_max is not None:
            depth.append(camera.depth_max)
    rows.append(" ".join(f"{v:.10g}" for v in depth))
    make_parent(path)
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")


def read_pair_txt(path: str | os.PathLike[str]) -> dict[int, list[tuple[int, float]]]:
    """Read ``pair.txt``: reference view id -> [(source view id, score), ...] best first."""
    p = require_file(path, "MVSNet pair file")
    lines = [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    try:
        total = int(lines[0])
    except (IndexError, ValueError):
        raise MVSCameraFormatError(
            p, f"first line {lines[0] if lines else ''!r}: expected the number of views"
        ) from None
    if len(lines) != 1 + 2 * total:
        raise MVSCameraFormatError(
            p, f"has {len(lines) - 1} lines after the count; expected {2 * total} for {total} views"
        )
    pairs: dict[int, list[tuple[int, float]]] = {}
    for k in range(total):
        ref_line, src_line = lines[1 + 2 * k], lines[2 + 2 * k]
        fields = src_line.split()
        try:
            ref = int(ref_line)
            n = int(fields[0])
            sources = [(int(fields[1 + 2 * i]), float(fields[2 + 2 * i])) for i in range(n)]
        except (ValueError, IndexError):
            raise MVSCameraFormatError(
                p,
                f"lines {2 + 2 * k}-{3 + 2 * k} ({ref_line!r}, {src_line!r}): expected a view id, then "
                "'N id score id score ...' with N pairs",
            ) from None
        if len(fields) != 1 + 2 * n:
            raise MVSCameraFormatError(
                p, f"line {3 + 2 * k} announces {n} source views but has {len(fields) - 1} fields"
            )
        pairs[ref] = sources
    return pairs


def write_pair_txt(path: str | os.PathLike[str], pairs: dict[int, list[tuple[int, float]]]) -> None:
    rows = [str(len(pairs))]
    for ref, sources in pairs.items():
        rows += [str(ref), " ".join([str(len(sources)), *(f"{i} {s:.6g}" for i, s in sources)])]
    make_parent(path)
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")


def scale_intrinsics(intrinsic: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """K for an image resized by ``(scale_x, scale_y)`` (pixel-edge convention: ``cx' = cx * sx``)."""
    k = np.array(intrinsic, dtype=np.float64, copy=True)
    k[0, :] *= scale_x
    k[1, :] *= scale_y
    return k


def downsample_intrinsics(intrinsic, factor):
    """K (numpy or torch, (..., 3, 3)) for an image downsampled by ``factor`` (a number, or numpy ``(fx, fy)``) with
    pixel centres kept aligned (``c' = (c + 0.5) / factor - 0.5``), as area averaging and strided feature grids do
    (``cv2.pyrDown`` does not: its pixel ``i`` is centred on input pixel ``2i``)."""
    k = intrinsic * 1.0  # a copy, for numpy arrays and tensors alike
    k[..., :2, :2] = intrinsic[..., :2, :2] / factor
    k[..., :2, 2] = (intrinsic[..., :2, 2] + 0.5) / factor - 0.5
    return k


def crop_intrinsics(intrinsic: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """K for an image cropped at top-left ``(x0, y0)``: the principal point moves, the focal lengths stay."""
    k = np.array(intrinsic, dtype=np.float64, copy=True)
    k[0, 2] -= x0
    k[1, 2] -= y0
    return k
