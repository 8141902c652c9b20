"""KITTI 3D object benchmark files: velodyne scans, ``label_2`` annotations, calibration, and box conversions.

Geiger, Lenz and Urtasun, "Are we ready for Autonomous Driving? The KITTI Vision Benchmark Suite", CVPR 2012. The
conventions below follow the benchmark's devkit and OpenPCDet (``pcdet/utils/{calibration_kitti,object3d_kitti,
box_utils}.py``), which the KITTI-trained detectors (PointRCNN, 3DSSD, IA-SSD, RIDE) use; reimplemented from those
facts, no code copied.

Files (one per frame ``NNNNNN``):

- ``velodyne/NNNNNN.bin``: float32 ``(N, 4)`` = x, y, z, reflectance in the LiDAR frame (x forward, y left, z up).
- ``label_2/NNNNNN.txt``: one object per line, 15 fields (results add a 16th, the score): type, truncated,
  occluded, alpha, 2-D bbox (left, top, right, bottom), dimensions **h, w, l**, location (x, y, z of the **bottom
  centre** in rectified camera coordinates: x right, y down, z forward), rotation_y (about the camera y axis).
- ``calib/NNNNNN.txt``: ``P0:``..``P3:`` (3x4), ``R0_rect:`` (3x3), ``Tr_velo_to_cam:``, ``Tr_imu_to_velo:`` (3x4).
  ``x_rect = R0_rect (Tr_velo_to_cam [x_lidar; 1])`` and the left colour image is ``P2 [x_rect; 1]``.

LiDAR boxes are OpenPCDet's ``(x, y, z, l, w, h, yaw)`` with z at the box **centre** and yaw about LiDAR z. The
conversion is OpenPCDet's: ``centre = rect_to_lidar(location) + (0, 0, h/2)`` and ``yaw = -(pi/2 + rotation_y)``.
It treats the LiDAR z axis as the camera's -y axis, which is true to within the small calibration tilt (< 1 degree
for KITTI); using the same approximation as the detectors keeps their boxes comparable, and the two directions are
exact inverses of each other.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from lightning_hpml.datamodules.formats._checks import make_parent, require_file
from lightning_hpml.datamodules.formats.errors import FormatError

__all__ = [
    "CALIB_KEYS",
    "LABEL_KEYS",
    "KittiCalibration",
    "KittiObjectFormatError",
    "bev_boxes_overlap",
    "boxes_to_corners",
    "camera_boxes_to_lidar",
    "empty_label",
    "kitti_result_label",
    "lidar_boxes_to_camera",
    "lidar_boxes_to_image_bbox",
    "observation_angle",
    "points_in_boxes",
    "points_in_fov",
    "read_calib",
    "read_image_set",
    "read_label",
    "read_velodyne",
    "wrap_angle",
    "write_calib",
    "write_image_set",
    "write_label",
    "write_velodyne",
]

LABEL_KEYS: tuple[str, ...] = (
    "name",
    "truncated",
    "occluded",
    "alpha",
    "bbox",
    "dimensions",
    "location",
    "rotation_y",
)
"""Keys of a label dict, in file order (``score`` is added for result files)."""

CALIB_KEYS: tuple[str, ...] = ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo")
"""Calibration entries in the order the benchmark writes them."""

_CALIB_SHAPES = {"R0_rect": (3, 3)}
_REQUIRED_CALIB = ("P2", "R0_rect", "Tr_velo_to_cam")
_FRAME_ID = re.compile(r"^\d{6}$")


class KittiObjectFormatError(FormatError):
    """A KITTI 3D object file (velodyne ``.bin``, ``label_2``, ``calib`` or ``ImageSets`` list) is malformed."""


# ------------------------------------------------------------------------------------------------------ velodyne
def read_velodyne(path: str | os.PathLike[str], num_features: int = 4) -> np.ndarray:
    """Read a velodyne scan as float32 ``(N, num_features)`` (KITTI: x, y, z, reflectance).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KittiObjectFormatError: The size is not a multiple of ``4 * num_features`` bytes, or a value is not finite.
    """
    p = require_file(path, "velodyne scan")
    size = p.stat().st_size
    row = 4 * num_features
    if size % row:
        raise KittiObjectFormatError(
            p, f"{size} bytes is not a multiple of {row} (float32 x {num_features} per point); not a KITTI scan"
        )
    points = np.fromfile(p, dtype="<f4").reshape(-1, num_features)
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise KittiObjectFormatError(p, f"{bad} of {len(points)} points hold NaN or infinite values")
    return points.astype(np.float32, copy=False)


def write_velodyne(path: str | os.PathLike[str], points: np.ndarray) -> None:
    """Write float32 ``(N, C)`` points as a little-endian velodyne ``.bin`` (creates parent folders)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"`points` must be (N, C>=3), got shape {points.shape}")
    np.ascontiguousarray(points, dtype="<f4").tofile(make_parent(path))


# --------------------------------------------------------------------------------------------------------- labels
def empty_label(with_score: bool = False) -> dict[str, np.ndarray]:
    """A label dict with no objects (arrays of the right dtypes and trailing shapes)."""
    label = {
        "name": np.zeros(0, dtype="<U16"),
        "truncated": np.zeros(0, dtype=np.float64),
        "occluded": np.zeros(0, dtype=np.int64),
        "alpha": np.zeros(0, dtype=np.float64),
        "bbox": np.zeros((0, 4), dtype=np.float64),
        "dimensions": np.zeros((0, 3), dtype=np.float64),
        "location": np.zeros((0, 3), dtype=np.float64),
        "rotation_y": np.zeros(0, dtype=np.float64),
    }
    if with_score:
        label["score"] = np.zeros(0, dtype=np.float64)
    return label


def read_label(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a ``label_2`` (or result) file into a dict of arrays, one row per object, DontCare included.

    Keys: ``name`` (M,) str, ``truncated`` (M,) float, ``occluded`` (M,) int, ``alpha`` (M,), ``bbox`` (M, 4)
    left/top/right/bottom pixels, ``dimensions`` (M, 3) **h, w, l** metres (file order), ``location`` (M, 3) bottom
    centre in rectified camera coordinates, ``rotation_y`` (M,), and ``score`` (M,) when the lines have 16 fields.
    An empty file is a frame without objects.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KittiObjectFormatError: A line has neither 15 nor 16 fields, lines mix 15 and 16 fields, or a numeric field
            does not parse; the message gives the line number.
    """
    p = require_file(path, "KITTI label file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise KittiObjectFormatError(p, f"not a UTF-8 text file ({err})") from None
    rows: list[list[str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise KittiObjectFormatError(
                p,
                f"line {number} has {len(fields)} fields; expected 15 (type truncated occluded alpha bbox(4) "
                "h w l x y z rotation_y) or 16 (plus score)",
            )
        rows.append(fields)
        if len(fields) != len(rows[0]):
            raise KittiObjectFormatError(p, f"line {number} has {len(fields)} fields but line 1 has {len(rows[0])}")
    if not rows:
        return empty_label()
    try:
        values = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64)
    except ValueError as err:
        raise KittiObjectFormatError(p, f"a numeric field does not parse ({err})") from None
    occluded = values[:, 1]
    if not np.array_equal(occluded, np.round(occluded)):
        raise KittiObjectFormatError(p, f"occluded must be an integer (0..3, -1 for DontCare), got {occluded}")
    label = {
        "name": np.array([r[0] for r in rows], dtype="<U16"),
        "truncated": values[:, 0].copy(),
        "occluded": occluded.astype(np.int64),
        "alpha": values[:, 2].copy(),
        "bbox": values[:, 3:7].copy(),
        "dimensions": values[:, 7:10].copy(),
        "location": values[:, 10:13].copy(),
        "rotation_y": values[:, 13].copy(),
    }
    if values.shape[1] == 15:
        label["score"] = values[:, 14].copy()
    return label


def write_label(path: str | os.PathLike[str], label: dict[str, np.ndarray], decimals: int = 2) -> None:
    """Write a label dict (keys of :func:`read_label`) as a ``label_2``/result file.

    Args:
        path: Output file (parent folders are created).
        label: Arrays of one length M; ``score`` is written as a 16th field when present.
        decimals: Decimals of the float fields; 2 is the benchmark's own ground-truth precision. Scores get at
            least 4, so that ranking by score survives the round trip.

    Raises:
        ValueError: A key is missing or the arrays disagree in length or shape.
    """
    missing = [k for k in LABEL_KEYS if k not in label]
    if missing:
        raise ValueError(f"`label` lacks the keys {missing}; expected {list(LABEL_KEYS)} (+ optional 'score')")
    num = len(label["name"])
    shapes = {"bbox": (num, 4), "dimensions": (num, 3), "location": (num, 3)}
    for key in (*LABEL_KEYS, *(("score",) if "score" in label else ())):
        shape = np.shape(label[key])
        if shape != shapes.get(key, (num,)):
            raise ValueError(
                f"`label[{key!r}]` has shape {shape}, expected {shapes.get(key, (num,))} for {num} objects"
            )
    f, s = f"{{:.{decimals}f}}", f"{{:.{max(decimals, 4)}f}}"
    lines = []
    for i in range(num):
        name = str(label["name"][i])
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"object type {name!r} must be one non-empty word")
        numbers = [
            f.format(float(label["truncated"][i])),
            str(int(label["occluded"][i])),
            f.format(float(label["alpha"][i])),
            *(f.format(float(v)) for v in label["bbox"][i]),
            *(f.format(float(v)) for v in label["dimensions"][i]),
            *(f.format(float(v)) for v in label["location"][i]),
            f.format(float(label["rotation_y"][i])),
        ]
        if "score" in label:
            numbers.append(s.format(float(label["score"][i])))
        lines.append(" ".join([name, *numbers]))
    make_parent(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- calibration
def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


@dataclass(eq=False)
class KittiCalibration:
    """One frame's calibration; projections of ``(N, 3)`` points between LiDAR, rectified camera and image.

    ``P0``, ``P1``, ``P3`` and ``Tr_imu_to_velo`` are kept for writing the file back; only ``P2``, ``R0_rect`` and
    ``Tr_velo_to_cam`` are used (the left colour camera). Inverses are exact (4x4 matrix inverse), so
    ``rect_to_lidar(lidar_to_rect(x)) == x`` to rounding, although ``R0_rect`` as printed is not exactly orthonormal.
    """

    P2: np.ndarray
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    P0: np.ndarray | None = None
    P1: np.ndarray | None = None
    P3: np.ndarray | None = None
    Tr_imu_to_velo: np.ndarray | None = None
    _lidar_to_rect: np.ndarray = field(init=False, repr=False)
    _rect_to_lidar: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for key in CALIB_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            shape = _CALIB_SHAPES.get(key, (3, 4))
            if value.shape != shape:
                raise ValueError(f"calibration {key} must have shape {shape}, got {value.shape}")
            setattr(self, key, value)
        self._lidar_to_rect = _homogeneous(self.R0_rect) @ _homogeneous(self.Tr_velo_to_cam)
        self._rect_to_lidar = np.linalg.inv(self._lidar_to_rect)

    @property
    def lidar_to_rect_matrix(self) -> np.ndarray:
        """4x4 ``R0_rect @ Tr_velo_to_cam`` (homogeneous)."""
        return self._lidar_to_rect.copy()

    def lidar_to_rect(self, points: np.ndarray) -> np.ndarray:
        """LiDAR ``(N, 3)`` -> rectified camera ``(N, 3)``."""
        points = np.asarray(points, dtype=np.float64)[:, :3]
        return points @ self._lidar_to_rect[:3, :3].T + self._lidar_to_rect[:3, 3]

    def rect_to_lidar(self, points: np.ndarray) -> np.ndarray:
        """Rectified camera ``(N, 3)`` -> LiDAR ``(N, 3)``."""
        points = np.asarray(points, dtype=np.float64)[:, :3]
        return points @ self._rect_to_lidar[:3, :3].T + self._rect_to_lidar[:3, 3]

    def rect_to_image(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rectified camera ``(N, 3)`` -> pixel ``(N, 2)`` (u, v) in image 2 and depth ``(N,)`` along its axis.

        Points at or behind the image plane (depth <= 0) get meaningless pixels; check the depth.
        """
        points = np.asarray(points, dtype=np.float64)[:, :3]
        projected = points @ self.P2[:, :3].T + self.P2[:, 3]
        depth = projected[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = projected[:, :2] / depth[:, None]
        return uv, depth - self.P2[2, 3]

    def lidar_to_image(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LiDAR ``(N, 3)`` -> pixel ``(N, 2)`` and rectified depth ``(N,)`` (see :meth:`rect_to_image`)."""
        return self.rect_to_image(self.lidar_to_rect(points))

    def allclose(self, other: KittiCalibration, atol: float = 1e-12) -> bool:
        """True if every matrix present in either calibration matches within ``atol``."""
        for key in CALIB_KEYS:
            a, b = getattr(self, key), getattr(other, key)
            if (a is None) != (b is None) or (a is not None and not np.allclose(a, b, rtol=0, atol=atol)):
                return False
        return True


def read_calib(path: str | os.PathLike[str]) -> KittiCalibration:
    """Read a ``calib/NNNNNN.txt`` file.

    ``P2``, ``R0_rect`` and ``Tr_velo_to_cam`` are required; ``P0``, ``P1``, ``P3``, ``Tr_imu_to_velo`` are read
    when present. Unknown keys are ignored (the raw-data calibrations carry more).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KittiObjectFormatError: A required key is missing, or an entry has the wrong number of values.
    """
    p = require_file(path, "KITTI calibration file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise KittiObjectFormatError(p, f"not a UTF-8 text file ({err})") from None
    entries: dict[str, np.ndarray] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep:
            raise KittiObjectFormatError(p, f"line {number} {line[:40]!r} is not 'KEY: v1 v2 ...'")
        if key not in CALIB_KEYS:
            continue
        try:
            values = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError as err:
            raise KittiObjectFormatError(p, f"line {number} ({key}): a value does not parse ({err})") from None
        shape = _CALIB_SHAPES.get(key, (3, 4))
        if values.size != shape[0] * shape[1]:
            raise KittiObjectFormatError(
                p,
                f"line {number}: {key} has {values.size} values, expected {shape[0] * shape[1]} ({shape[0]}x{shape[1]})",
            )
        entries[key] = values.reshape(shape)
    missing = [k for k in _REQUIRED_CALIB if k not in entries]
    if missing:
        raise KittiObjectFormatError(p, f"missing {missing}; a KITTI object calibration has lines {list(CALIB_KEYS)}")
    try:
        return KittiCalibration(**entries)
    except np.linalg.LinAlgError:
        raise KittiObjectFormatError(p, "R0_rect @ Tr_velo_to_cam is singular") from None


def write_calib(path: str | os.PathLike[str], calib: KittiCalibration) -> None:
    """Write ``calib`` in the benchmark's format (``KEY: v1 ... vn`` with ``%e`` values; absent entries skipped)."""
    lines = []
    for key in CALIB_KEYS:
        value = getattr(calib, key)
        if value is not None:
            lines.append(f"{key}: " + " ".join(f"{v:.12e}" for v in np.asarray(value).ravel()))
    make_parent(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------------ ImageSets
def read_image_set(path: str | os.PathLike[str]) -> list[str]:
    """Read an ``ImageSets/<split>.txt`` list of 6-digit frame ids (blank lines ignored).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KittiObjectFormatError: A line is not a 6-digit id.
    """
    p = require_file(path, "KITTI ImageSets list")
    ids = []
    for number, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        token = line.strip()
        if not token:
            continue
        if not _FRAME_ID.match(token):
            raise KittiObjectFormatError(p, f"line {number} {token[:40]!r} is not a 6-digit frame id like 000123")
        ids.append(token)
    return ids


def write_image_set(path: str | os.PathLike[str], frame_ids: list[str]) -> None:
    """Write frame ids one per line (the ``ImageSets`` format)."""
    make_parent(path).write_text("".join(f"{i}\n" for i in frame_ids), encoding="utf-8")


# ------------------------------------------------------------------------------------------------- box conversion
def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Wrap angles to ``[-pi, pi)``."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def camera_boxes_to_lidar(
    location: np.ndarray, dimensions_hwl: np.ndarray, rotation_y: np.ndarray, calib: KittiCalibration
) -> np.ndarray:
    """Label boxes (rect camera, bottom centre, h w l, rotation_y) -> LiDAR ``(M, 7)`` x, y, z, l, w, h, yaw.

    OpenPCDet's convention: centre = ``rect_to_lidar(location)`` raised by h/2 along LiDAR z; yaw =
    ``-(pi/2 + rotation_y)``, wrapped to ``[-pi, pi)``.
    """
    location = np.asarray(location, dtype=np.float64).reshape(-1, 3)
    hwl = np.asarray(dimensions_hwl, dtype=np.float64).reshape(-1, 3)
    ry = np.asarray(rotation_y, dtype=np.float64).reshape(-1)
    centre = calib.rect_to_lidar(location)
    h, w, length = hwl[:, 0], hwl[:, 1], hwl[:, 2]
    centre[:, 2] += h / 2
    yaw = wrap_angle(-(np.pi / 2 + ry))
    return np.concatenate([centre, np.stack([length, w, h, yaw], axis=1)], axis=1)


def lidar_boxes_to_camera(boxes: np.ndarray, calib: KittiCalibration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`camera_boxes_to_lidar`: returns ``location`` (M, 3), ``dimensions`` (M, 3) h w l and
    ``rotation_y`` (M,) wrapped to ``[-pi, pi)``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    bottom = boxes[:, :3].copy()
    bottom[:, 2] -= boxes[:, 5] / 2
    location = calib.lidar_to_rect(bottom)
    dimensions = boxes[:, [5, 4, 3]].copy()
    rotation_y = wrap_angle(-boxes[:, 6] - np.pi / 2)
    return location, dimensions, rotation_y


def observation_angle(location: np.ndarray, rotation_y: np.ndarray) -> np.ndarray:
    """KITTI ``alpha``: rotation_y minus the viewing-ray azimuth ``atan2(x, z)``, wrapped to ``[-pi, pi)``."""
    location = np.asarray(location, dtype=np.float64).reshape(-1, 3)
    return wrap_angle(np.asarray(rotation_y, dtype=np.float64) - np.arctan2(location[:, 0], location[:, 2]))


def boxes_to_corners(boxes: np.ndarray) -> np.ndarray:
    """LiDAR boxes ``(M, 7)`` -> corners ``(M, 8, 3)``: the bottom 4 counter-clockwise, then the top 4."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    signs = np.array(
        [[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]],
        dtype=np.float64,
    )
    local = signs[None] * boxes[:, None, 3:6] / 2
    cos, sin = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * cos - local[..., 1] * sin
    y = local[..., 0] * sin + local[..., 1] * cos
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes[:, None, :3]


def lidar_boxes_to_image_bbox(
    boxes: np.ndarray, calib: KittiCalibration, image_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """2-D boxes ``(M, 4)`` left, top, right, bottom: the 8 projected corners' extent, clipped to the image.

    This is how detectors fill the bbox field of result files (and how the synthetic labels are made). Corners
    behind the camera are not handled specially (their projection is meaningless), as in OpenPCDet; boxes of
    interest lie in front.

    Args:
        boxes: LiDAR boxes ``(M, 7)``.
        calib: The frame's calibration.
        image_shape: ``(height, width)``; clipping to ``[0, width-1] x [0, height-1]``. ``None`` skips clipping.
    """
    corners = boxes_to_corners(boxes)
    if len(corners) == 0:
        return np.zeros((0, 4), dtype=np.float64)
    uv, _ = calib.lidar_to_image(corners.reshape(-1, 3))
    uv = uv.reshape(-1, 8, 2)
    bbox = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=1)
    if image_shape is not None:
        height, width = image_shape
        bbox[:, [0, 2]] = np.clip(bbox[:, [0, 2]], 0, width - 1)
        bbox[:, [1, 3]] = np.clip(bbox[:, [1, 3]], 0, height - 1)
    return bbox


def kitti_result_label(
    boxes: np.ndarray,
    scores: np.ndarray,
    names: list[str],
    calib: KittiCalibration,
    image_shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """A label dict with scores (the KITTI result-file format) for LiDAR-frame detections, as OpenPCDet fills it:
    camera-frame location / dimensions / rotation_y, ``alpha`` from them, the projected 2-D box clipped to the image,
    truncation and occlusion 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if len(scores) != len(boxes) or len(names) != len(boxes):
        raise ValueError(
            f"need one score and name per box: {len(boxes)} boxes, {len(scores)} scores, {len(names)} names"
        )
    location, dimensions, rotation_y = lidar_boxes_to_camera(boxes, calib)
    label = empty_label(with_score=True)
    label.update(
        name=np.asarray(names, dtype=label["name"].dtype),
        truncated=np.zeros(len(boxes)),
        occluded=np.zeros(len(boxes), dtype=label["occluded"].dtype),
        alpha=observation_angle(location, rotation_y),
        bbox=lidar_boxes_to_image_bbox(boxes, calib, image_shape),
        dimensions=dimensions,
        location=location,
        rotation_y=rotation_y,
        score=np.asarray(scores, dtype=np.float64).reshape(-1),
    )
    return label


def points_in_fov(points: np.ndarray, calib: KittiCalibration, image_shape: tuple[int, int]) -> np.ndarray:
    """Mask ``(N,)`` of points that project inside image 2 and lie in front of it (rectified depth >= 0)."""
    uv, depth = calib.lidar_to_image(np.asarray(points)[:, :3])
    height, width = image_shape
    with np.errstate(invalid="ignore"):
        return (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height) & (depth >= 0)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Mask ``(N, M)``: point n inside LiDAR box m, enlarged by ``margin`` metres on every side.

    Loops over boxes (a frame has tens) so memory stays ``O(N)`` per box for scans of 120k points.
    """
    points = np.asarray(points, dtype=np.float64)[:, :3]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    mask = np.zeros((len(points), len(boxes)), dtype=bool)
    for m, box in enumerate(boxes):
        half = box[3:6] / 2 + margin
        offset = points - box[:3]
        inside = np.abs(offset[:, 2]) <= half[2]
        radius = float(np.hypot(half[0], half[1]))
        inside &= (np.abs(offset[:, 0]) <= radius) & (np.abs(offset[:, 1]) <= radius)
        candidates = np.flatnonzero(inside)
        cos, sin = np.cos(box[6]), np.sin(box[6])
        local_x = offset[candidates, 0] * cos + offset[candidates, 1] * sin
        local_y = -offset[candidates, 0] * sin + offset[candidates, 1] * cos
        mask[candidates, m] = (np.abs(local_x) <= half[0]) & (np.abs(local_y) <= half[1])
    return mask


def bev_boxes_overlap(boxes_a: np.ndarray, boxes_b: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Mask ``(A, B)``: the bird's-eye-view rectangles (enlarged by ``margin``) of two box sets intersect.

    Separating-axis test on the rotated rectangles: exact, so it equals "rotated BEV IoU > 0", the collision test
    of ground-truth sampling.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 7)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=bool)

    def rect(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grown = boxes.copy()
        grown[:, 3:5] += 2 * margin
        corners = boxes_to_corners(grown)[:, :4, :2]  # (K, 4, 2)
        cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
        axes = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], axis=1)  # (K, 2, 2)
        return corners, axes

    corners_a, axes_a = rect(a)
    corners_b, axes_b = rect(b)
    separated = np.zeros((len(a), len(b)), dtype=bool)
    for axes, from_a in ((axes_a, True), (axes_b, False)):
        for k in range(2):
            axis = axes[:, k]  # (K, 2)
            if from_a:
                proj_a = np.einsum("acd,ad->ac", corners_a, axis)[:, None, :]  # (A, 1, 4)
                proj_b = np.einsum("bcd,ad->abc", corners_b, axis)  # (A, B, 4)
            else:
                proj_a = np.einsum("acd,bd->abc", corners_a, axis)  # (A, B, 4)
                proj_b = np.einsum("bcd,bd->bc", corners_b, axis)[None]  # (1, B, 4)
            separated |= (proj_a.max(-1) < proj_b.min(-1)) | (proj_b.max(-1) < proj_a.min(-1))
    return ~separated
