"""nuScenes on-disk conventions: LiDAR ``.pcd.bin`` scans, the category taxonomy, poses and box conversions.

Caesar et al., "nuScenes: A multimodal dataset for autonomous driving", CVPR 2020; facts from the nuscenes-devkit
(``nuscenes/nuscenes.py``, ``utils/data_classes.py``, ``eval/detection/utils.py``, ``eval/detection/constants.py``)
and OpenPCDet's ``pcdet/datasets/nuscenes/nuscenes_utils.py``; reimplemented from those facts, no code copied.
Everything but :func:`load_nuscenes` and :func:`scenes_of_split` needs numpy only (no devkit), so that the
synthetic writer runs without it.

Conventions:

- ``samples/LIDAR_TOP/*.pcd.bin`` and ``sweeps/LIDAR_TOP/*.pcd.bin``: little-endian float32 ``(N, 5)`` = x, y, z,
  intensity (0..255), ring index, in the LiDAR frame of that scan.
- Poses (``ego_pose``: ego -> global; ``calibrated_sensor``: sensor -> ego) are ``translation`` ``[x, y, z]`` metres
  and ``rotation`` a unit quaternion ``[w, x, y, z]``.
- ``sample_annotation`` boxes are in the **global** frame: ``translation`` = box centre, ``size`` = **[w, l, h]**
  (width first), ``rotation`` = quaternion of the box's heading (its x axis along the length).
- LiDAR boxes (this package, OpenPCDet): ``(x, y, z_centre, l, w, h, yaw)`` in the keyframe LiDAR frame, yaw about
  LiDAR z from LiDAR x. The yaw of a rotated box is the devkit's ``quaternion_yaw``: the angle of the box's x axis
  projected onto the LiDAR x-y plane.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lightning_hpml.datamodules.formats._checks import make_parent, require_file
from lightning_hpml.datamodules.formats.errors import FormatError

__all__ = [
    "DETECTION_CLASSES",
    "DETECTION_DEFAULT_ATTRIBUTE",
    "GENERAL_TO_DETECTION",
    "NUSCENES_ATTRIBUTES",
    "NUSCENES_CATEGORIES",
    "NUSCENES_LAYOUT",
    "NUSCENES_TABLES",
    "NUSCENES_VISIBILITY",
    "NuScenesFormatError",
    "global_boxes_to_lidar",
    "lidar_boxes_to_global",
    "load_nuscenes",
    "matrix_to_quaternion",
    "pose_matrix",
    "quaternion_multiply",
    "quaternion_to_matrix",
    "read_lidar_bin",
    "scenes_of_split",
    "write_lidar_bin",
    "yaw_quaternion",
]

NUSCENES_TABLES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)
"""The 13 JSON tables of a nuScenes version folder (``v1.0-mini/``, ``v1.0-trainval/``, ...)."""

NUSCENES_LAYOUT = (
    "<root>/<version>/{" + ",".join(NUSCENES_TABLES) + "}.json, <root>/samples/LIDAR_TOP/*.pcd.bin, "
    "<root>/sweeps/LIDAR_TOP/*.pcd.bin and <root>/maps/*.png (custom splits: <root>/<version>/splits.json)"
)
"""The layout quoted in missing-file errors."""

NUSCENES_CATEGORIES: dict[str, str] = {
    "animal": "All animals, e.g. cats, rats, dogs, deer, birds.",
    "human.pedestrian.adult": "Adult subcategory.",
    "human.pedestrian.child": "Child subcategory.",
    "human.pedestrian.construction_worker": "Construction worker.",
    "human.pedestrian.personal_mobility": "A small electric or self-propelled vehicle, e.g. skateboard, segway.",
    "human.pedestrian.police_officer": "Police officer.",
    "human.pedestrian.stroller": "Strollers.",
    "human.pedestrian.wheelchair": "Wheelchairs.",
    "movable_object.barrier": "Temporary road barrier placed to redirect traffic.",
    "movable_object.debris": "Movable debris on the road, e.g. trash bags, branches.",
    "movable_object.pushable_pullable": "Objects a pedestrian may push or pull, e.g. dolleys, wheel barrows.",
    "movable_object.trafficcone": "All types of traffic cone.",
    "static_object.bicycle_rack": "Area or device intended to park or secure bicycles in a row.",
    "vehicle.bicycle": "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds.",
    "vehicle.bus.bendy": "Bendy bus subcategory.",
    "vehicle.bus.rigid": "Rigid bus subcategory.",
    "vehicle.car": "Vehicle designed primarily for personal use, e.g. sedans, hatch-backs, wagons, vans, SUVs.",
    "vehicle.construction": "Vehicles primarily designed for construction, e.g. cranes, excavators.",
    "vehicle.emergency.ambulance": "All types of ambulances.",
    "vehicle.emergency.police": "All types of police vehicles.",
    "vehicle.motorcycle": "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly.",
    "vehicle.trailer": "Any vehicle trailer, both for trucks, cars and bikes.",
    "vehicle.truck": "Vehicles primarily designed to haul cargo including pick-ups, lorries, trucks and semi-tractors.",
}
"""The 23 general categories of nuScenes v1.0 (descriptions paraphrased)."""

NUSCENES_ATTRIBUTES: dict[str, str] = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move.",
    "vehicle.parked": "Vehicle is stationary (usually for longer duration) with no immediate intent to move.",
    "cycle.with_rider": "There is a rider on the bicycle or motorcycle.",
    "cycle.without_rider": "There is NO rider on the bicycle or motorcycle.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
    "pedestrian.standing": "The human is standing.",
    "pedestrian.moving": "The human is moving.",
}
"""The 8 attributes of nuScenes v1.0."""

NUSCENES_VISIBILITY: tuple[tuple[str, str, str], ...] = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)
"""``(token, level, description)`` of the 4 visibility levels (the fraction of the object visible in the cameras)."""

DETECTION_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)
"""The 10 classes of the nuScenes detection task, in OpenPCDet's ``CLASS_NAMES`` order (labels are 1-based in it)."""

GENERAL_TO_DETECTION: dict[str, str] = {
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.barrier": "barrier",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}
"""The official general -> detection mapping (devkit ``category_to_detection_name``); every other category
(animal, wheelchair, stroller, personal_mobility, ambulance, police vehicle, debris, pushable_pullable,
bicycle_rack) is ignored."""

DETECTION_DEFAULT_ATTRIBUTE: dict[str, str] = {
    "car": "vehicle.parked",
    "truck": "vehicle.parked",
    "construction_vehicle": "vehicle.parked",
    "bus": "vehicle.moving",
    "trailer": "vehicle.parked",
    "barrier": "",
    "motorcycle": "cycle.without_rider",
    "bicycle": "cycle.without_rider",
    "pedestrian": "pedestrian.moving",
    "traffic_cone": "",
}
"""Attribute written for a prediction that carries none (the per-class defaults of mmdetection3d / OpenPCDet's
nuScenes result export; barrier and traffic cone have no attributes)."""


class NuScenesFormatError(FormatError):
    """A nuScenes file (LiDAR ``.pcd.bin`` or a JSON table) is malformed or inconsistent."""


# ------------------------------------------------------------------------------------------------------ scans
def read_lidar_bin(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a nuScenes LiDAR scan as float32 ``(N, 5)``: x, y, z, intensity, ring index.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NuScenesFormatError: The size is not a multiple of 20 bytes (5 float32), or a coordinate is not finite.
    """
    p = require_file(path, "nuScenes LiDAR scan")
    size = p.stat().st_size
    if size % 20:
        raise NuScenesFormatError(
            p,
            f"{size} bytes is not a multiple of 20 (float32 x 5 per point: x, y, z, "
            "intensity, ring); not a nuScenes .pcd.bin scan",
        )
    points = np.fromfile(p, dtype="<f4").reshape(-1, 5)
    if not np.isfinite(points[:, :4]).all():
        bad = int((~np.isfinite(points[:, :4])).any(axis=1).sum())
        raise NuScenesFormatError(p, f"{bad} of {len(points)} points hold NaN or infinite values")
    return points.astype(np.float32, copy=False)


def write_lidar_bin(path: str | os.PathLike[str], points: np.ndarray) -> None:
    """Write float32 ``(N, 5)`` points (x, y, z, intensity, ring) as a ``.pcd.bin`` (creates parent folders)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 5:
        raise ValueError(f"`points` must be (N, 5) x, y, z, intensity, ring; got shape {points.shape}")
    np.ascontiguousarray(points, dtype="<f4").tofile(make_parent(path))


# ------------------------------------------------------------------------------------------------ quaternions
def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(..., 4)`` ``[w, x, y, z]`` (normalised first)."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of ``[w, x, y, z]`` quaternions (broadcasting): rotate by ``b``, then by ``a``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def yaw_quaternion(yaw: np.ndarray | float) -> np.ndarray:
    """Quaternions ``(..., 4)`` of rotations by ``yaw`` radians about +z."""
    half = np.asarray(yaw, dtype=np.float64) / 2
    zero = np.zeros_like(half)
    return np.stack([np.cos(half), zero, zero, np.sin(half)], axis=-1)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """``[w, x, y, z]`` of a 3x3 rotation matrix (Shepperd's method; ``w >= 0``)."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def pose_matrix(translation: np.ndarray, rotation: np.ndarray, inverse: bool = False) -> np.ndarray:
    """4x4 homogeneous transform of a nuScenes pose record (``[x, y, z]``, ``[w, x, y, z]``); ``inverse`` inverts it.

    A ``calibrated_sensor`` pose maps sensor -> ego, an ``ego_pose`` maps ego -> global (the devkit's
    ``transform_matrix``).
    """
    rot = quaternion_to_matrix(rotation)
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    out = np.eye(4)
    if inverse:
        out[:3, :3] = rot.T
        out[:3, 3] = -rot.T @ t
    else:
        out[:3, :3] = rot
        out[:3, 3] = t
    return out


# --------------------------------------------------------------------------------------------- box conversion
def global_boxes_to_lidar(
    translation: np.ndarray, size: np.ndarray, rotation: np.ndarray, lidar_to_global: np.ndarray
) -> np.ndarray:
    """Convert global nuScenes boxes to LiDAR boxes ``(M, 7)`` x, y, z_centre, l, w, h, yaw.

    Args:
        translation: ``(M, 3)`` global box centres.
        size: ``(M, 3)`` **w, l, h** (the nuScenes order).
        rotation: ``(M, 4)`` global ``[w, x, y, z]`` quaternions.
        lidar_to_global: 4x4 transform of the LiDAR scan (``ego_to_global @ lidar_to_ego``).
    """
    translation = np.asarray(translation, dtype=np.float64).reshape(-1, 3)
    size = np.asarray(size, dtype=np.float64).reshape(-1, 3)
    rotation = np.asarray(rotation, dtype=np.float64).reshape(-1, 4)
    global_to_lidar = np.linalg.inv(lidar_to_global)
    centres = translation @ global_to_lidar[:3, :3].T + global_to_lidar[:3, 3]
    heading = quaternion_to_matrix(rotation)[:, :, 0] @ global_to_lidar[:3, :3].T  # the box x axis, LiDAR frame
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    return np.concatenate([centres, size[:, [1, 0, 2]], yaw[:, None]], axis=1)


def lidar_boxes_to_global(boxes: np.ndarray, lidar_to_global: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`global_boxes_to_lidar`: ``(translation (M, 3), size (M, 3) w, l, h, rotation (M, 4))``.

    The global rotation is ``q(lidar_to_global) * q_z(yaw)``, as the devkit's ``Box.rotate`` composes it.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    transform = np.asarray(lidar_to_global, dtype=np.float64)
    translation = boxes[:, :3] @ transform[:3, :3].T + transform[:3, 3]
    rotation = quaternion_multiply(matrix_to_quaternion(transform[:3, :3])[None], yaw_quaternion(boxes[:, 6]))
    return translation, boxes[:, [4, 3, 5]].copy(), rotation


# ------------------------------------------------------------------------------------------ devkit loading
def _devkit():
    try:
        from nuscenes.nuscenes import NuScenes
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "nuScenes needs the nuscenes-devkit: `pip install --no-deps nuscenes-devkit==1.2.0 pyquaternion "
            "descartes fire cachetools parameterized pycocotools` (see the Makefile; --no-deps keeps numpy 2)"
        ) from err
    return NuScenes


def load_nuscenes(root: str | os.PathLike[str], version: str, verbose: bool = False) -> Any:
    """Check the layout and load the tables with the devkit's ``NuScenes``.

    Raises:
        FileNotFoundError: ``root``, the version folder or a table is missing (the message lists what was looked for).
        NuScenesFormatError: The devkit cannot load the tables (the offending table is named when it can be found).
    """
    root = Path(root).expanduser()
    table_root = root / version
    missing = [f"{name}.json" for name in NUSCENES_TABLES if not (table_root / f"{name}.json").is_file()]
    if missing:
        if not root.is_dir():
            state = "does not exist"
        else:
            state = f"holds {sorted(p.name for p in root.iterdir())[:8]}"
        raise FileNotFoundError(
            f"nuScenes tables not found: {table_root} lacks {missing} (root {root} {state}); expected layout: "
            f"{NUSCENES_LAYOUT}"
        )
    NuScenes = _devkit()
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=verbose)
    except (ValueError, KeyError, TypeError, AssertionError, IndexError) as err:
        for name in NUSCENES_TABLES:  # find the culprit (only on failure: the tables can be large)
            path = table_root / f"{name}.json"
            try:
                records = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as table_err:
                raise NuScenesFormatError(path, f"not a readable JSON table ({table_err})") from err
            if not isinstance(records, list) or not all(isinstance(r, dict) and "token" in r for r in records):
                raise NuScenesFormatError(path, "expected a JSON list of records that each have a 'token'") from err
        raise NuScenesFormatError(table_root, f"the nuscenes-devkit could not load the tables: {err!r}") from err


def scenes_of_split(nusc: Any, split: str) -> list[str]:
    """Scene names of ``split``: a devkit predefined split, or one from ``<root>/<version>/splits.json``.

    Raises:
        ValueError: Unknown split, or a split naming scenes that are not in the loaded version.
    """
    from nuscenes.utils.splits import create_splits_scenes

    predefined = create_splits_scenes()
    custom_file = Path(nusc.dataroot) / nusc.version / "splits.json"
    if split in predefined:
        scenes = list(predefined[split])
    elif custom_file.is_file():
        try:
            custom = json.loads(custom_file.read_text(encoding="utf-8"))
        except ValueError as err:
            raise NuScenesFormatError(custom_file, f"not valid JSON ({err})") from None
        if not isinstance(custom, dict) or split not in custom:
            known = sorted(custom) if isinstance(custom, dict) else []
            raise ValueError(
                f"split {split!r} is neither a predefined nuScenes split {sorted(predefined)} nor in {custom_file} "
                f"(which defines {known})"
            )
        scenes = custom[split]
        if not isinstance(scenes, list) or not all(isinstance(s, str) for s in scenes):
            raise NuScenesFormatError(custom_file, f"split {split!r} must be a list of scene names")
    else:
        raise ValueError(
            f"split {split!r} is not a predefined nuScenes split {sorted(predefined)} and there is no custom split "
            f"file {custom_file}"
        )
    available = {scene["name"] for scene in nusc.scene}
    absent = [s for s in scenes if s not in available]
    if absent:
        raise ValueError(
            f"split {split!r} names {len(absent)} of its {len(scenes)} scenes that are not in {nusc.version} under "
            f"{nusc.dataroot} (e.g. {absent[0]!r}); pick a split of this version (v1.0-mini: mini_train/mini_val, "
            f"v1.0-trainval: train/val, or a custom split in splits.json)"
        )
    return scenes
