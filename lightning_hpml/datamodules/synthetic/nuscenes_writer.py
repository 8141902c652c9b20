"""Write a small synthetic dataset in the nuScenes layout, loadable by the nuscenes-devkit's ``NuScenes`` class.

Imitates Caesar et al., "nuScenes: A multimodal dataset for autonomous driving", CVPR 2020 (LiDAR part only), in
the on-disk format the nuscenes-devkit reads (``nuscenes/nuscenes.py``: table names, record fields, reverse
indices). Layout::

    <root>/v1.0-mini/{attribute,calibrated_sensor,category,ego_pose,instance,log,map,sample,
                      sample_annotation,sample_data,scene,sensor,visibility}.json
    <root>/v1.0-mini/splits.json                 our scene split: {"synthetic_train": [...], "synthetic_val": [...]}
    <root>/samples/LIDAR_TOP/<log>__LIDAR_TOP__<timestamp>.pcd.bin    keyframes (2 Hz)
    <root>/sweeps/LIDAR_TOP/<log>__LIDAR_TOP__<timestamp>.pcd.bin     intermediate scans between keyframes
    <root>/maps/<token>.png                      placeholder map mask (the devkit only checks that it exists)
    <root>/SYNTHETIC_README.txt

The scene names are ``synthetic-0001``, ... (not the devkit's ``scene-0061`` ...), so the devkit's predefined
``mini_train``/``mini_val`` splits do not apply; ``splits.json`` in the version folder is the devkit's (1.2)
custom-split file, naming the scenes of ``synthetic_train`` and ``synthetic_val`` (the last ``num_val_scenes``
scenes). Both the DataModule and the detection evaluation read it.

Content: per scene, a straight four-lane road (lanes 3.5 m wide) in the global frame with a kerb line of barriers and
traffic cones, sidewalks with pedestrians and bicycles, building walls and poles (unlabelled), and vehicles (car,
truck, bus, trailer, construction vehicle, motorcycle) in the lanes. Every one of the 10 detection classes appears
at least once near the middle of the ego path; a few objects of ignored categories (debris, stroller, police car)
are annotated too. Barriers, cones, trailers and construction vehicles are static; the others move slowly (<= 3 m/s)
along their lane or sidewalk, or stand still. The ego vehicle drives along the road at 4-8 m/s with a small yaw
rate; ``ego_pose`` (z = 0, as in nuScenes) is written for every LiDAR scan.

The LiDAR imitates the HDL-32E on top of the nuScenes car: 32 rings between +10.67 and -30.67 degrees, 360 degrees,
mounted at ``LIDAR_TOP_TRANSLATION`` with ``LIDAR_TOP_ROTATION`` (LiDAR x to the right of the car, y forward, z up,
plus a small tilt, like the real calibration). Each scan ray-casts the scene at its own timestamp (objects and ego
at that time) with :func:`~lightning_hpml.datamodules.synthetic.lidar_scene.scan_scene`: exact hits on the road
plane and on the boxes, 1 cm range noise by default. Intensity is the surface reflectance times 255 (nuScenes
intensities are 0..255); the ring index is 0 for the top ring. Annotations are at the keyframe times in the global
frame (centre, size w/l/h, yaw quaternion), with ``num_lidar_pts`` counted from the keyframe scan (0 for fully
occluded or out-of-range objects, which nuScenes annotates too), ``num_radar_pts`` 0 (no radar is simulated),
visibility from the fraction of unobstructed sight lines from the sensor, and attributes from the motion.
Tokens are 32 hex digits derived from ``(seed, table, key)``; the tree is a function of the arguments only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lightning_hpml.datamodules.formats.kitti_object import bev_boxes_overlap
from lightning_hpml.datamodules.formats.nuscenes import (
    NUSCENES_ATTRIBUTES,
    NUSCENES_CATEGORIES,
    NUSCENES_VISIBILITY,
    quaternion_multiply,
    quaternion_to_matrix,
    write_lidar_bin,
    yaw_quaternion,
)
from lightning_hpml.datamodules.synthetic.lidar_scene import (
    LidarScene,
    LidarSensor,
    occluded_fraction,
    ray_box_entry,
    scan_scene,
)
from lightning_hpml.datamodules.synthetic.output_tree import (
    item_rng,
    positive_int,
    prepare_output_root,
    validate_seed,
    write_synthetic_readme,
)

__all__ = [
    "HDL32E",
    "LIDAR_TOP_ROTATION",
    "LIDAR_TOP_TRANSLATION",
    "SYNTHETIC_OBJECTS",
    "SYNTHETIC_TRAIN_SPLIT",
    "SYNTHETIC_VAL_SPLIT",
    "SyntheticObjectClass",
    "write_nuscenes",
]

SYNTHETIC_TRAIN_SPLIT = "synthetic_train"
"""Custom split (``splits.json``) of the synthetic training scenes."""
SYNTHETIC_VAL_SPLIT = "synthetic_val"
"""Custom split (``splits.json``) of the synthetic validation scenes."""

HDL32E = LidarSensor(
    num_rings=32, elevation_deg=(-30.67, 10.67), azimuth_steps=1024, height=1.84, max_range=70.0, range_noise=0.01
)
"""The simulated LIDAR_TOP: Velodyne HDL-32E geometry (the real one returns ~1080 points per ring at 20 Hz)."""

LIDAR_TOP_TRANSLATION = (0.943713, 0.0, 1.84023)
"""LIDAR_TOP position in the ego frame (metres; as nuScenes' calibration, rounded)."""

LIDAR_TOP_ROTATION: tuple[float, float, float, float] = tuple(
    float(v)
    for v in quaternion_multiply(
        yaw_quaternion(-math.pi / 2),
        quaternion_multiply([math.cos(0.0035), math.sin(0.0035), 0, 0], [math.cos(-0.0052), 0, math.sin(-0.0052), 0]),
    )
)
"""LIDAR_TOP -> ego rotation ``[w, x, y, z]``: -90 degrees about z (LiDAR x to the car's right, y forward) and a tilt
of about 0.4 / 0.6 degrees about x / y, close to nuScenes' ``[0.7078, -0.0065, 0.0106, -0.7063]``."""

KEYFRAME_INTERVAL = 0.5
"""Seconds between keyframes (nuScenes annotates at 2 Hz)."""

_LANES = (-5.25, -1.75, 1.75, 5.25)  # lane centres (metres left of the road axis); d < 0 drive along the road
_EGO_LANE = -1.75
_KERB = 7.9  # barriers and cones stand on the kerb line at |d| ~ 7.5..8.3
_SIDEWALK = (9.0, 13.0)
_BUILDING = 16.0


@dataclass(frozen=True)
class SyntheticObjectClass:
    """How one general category appears in the synthetic scenes.

    Attributes:
        category: nuScenes general category name.
        size: Mean ``(w, l, h)`` in metres (close to the nuScenes class means).
        count: ``(min, max)`` objects per scene; ``min >= 1`` guarantees one near the middle of the ego path.
        zone: ``"lane"``, ``"kerb"`` or ``"sidewalk"``.
        max_speed: Largest speed in m/s (0: always static); about half of the objects stand still.
        reflectance: ``(min, max)`` of the base reflectance.
    """

    category: str
    size: tuple[float, float, float]
    count: tuple[int, int]
    zone: str
    max_speed: float
    reflectance: tuple[float, float] = (0.2, 0.7)


SYNTHETIC_OBJECTS: tuple[SyntheticObjectClass, ...] = (
    SyntheticObjectClass("vehicle.car", (1.95, 4.6, 1.73), (2, 5), "lane", 3.0, (0.15, 0.8)),
    SyntheticObjectClass("vehicle.truck", (2.5, 6.9, 2.8), (1, 2), "lane", 2.0),
    SyntheticObjectClass("vehicle.construction", (2.8, 6.4, 3.2), (1, 1), "lane", 0.0),
    SyntheticObjectClass("vehicle.bus.rigid", (2.95, 11.0, 3.5), (1, 1), "lane", 2.0),
    SyntheticObjectClass("vehicle.trailer", (2.3, 10.0, 3.7), (1, 1), "lane", 0.0),
    SyntheticObjectClass("vehicle.motorcycle", (0.77, 2.1, 1.47), (1, 2), "lane", 2.5),
    SyntheticObjectClass("vehicle.bicycle", (0.6, 1.7, 1.3), (1, 2), "sidewalk", 1.5),
    SyntheticObjectClass("human.pedestrian.adult", (0.67, 0.73, 1.77), (1, 4), "sidewalk", 1.4, (0.2, 0.5)),
    SyntheticObjectClass("human.pedestrian.child", (0.5, 0.5, 1.3), (0, 1), "sidewalk", 1.0, (0.2, 0.5)),
    SyntheticObjectClass("movable_object.barrier", (2.5, 0.5, 0.98), (1, 3), "kerb", 0.0, (0.4, 0.8)),
    SyntheticObjectClass("movable_object.trafficcone", (0.41, 0.41, 1.07), (1, 3), "kerb", 0.0, (0.5, 0.9)),
    SyntheticObjectClass("movable_object.debris", (0.6, 0.6, 0.3), (0, 1), "kerb", 0.0),
    SyntheticObjectClass("human.pedestrian.stroller", (0.6, 0.9, 1.1), (0, 1), "sidewalk", 0.8),
    SyntheticObjectClass("vehicle.emergency.police", (2.0, 5.0, 1.8), (0, 1), "lane", 0.0),
)
"""Default object classes (the first of each class with ``count[0] >= 1`` is placed within 15 m of the ego path's
middle, so every detection class is present and in evaluation range)."""


@dataclass(frozen=True)
class _MountedSensor(LidarSensor):
    """:class:`LidarSensor` whose rays are rotated by ``rotation`` (row-major 3x3: LiDAR frame -> scan frame)."""

    rotation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def directions(self) -> np.ndarray:
        return super().directions() @ np.asarray(self.rotation, dtype=np.float64).reshape(3, 3).T


@dataclass
class _Object:
    category: str
    wlh: np.ndarray
    position: np.ndarray  # (x, y) global at time 0
    heading: float
    speed: float
    reflectance: float
    attribute: str

    def box(self, t: float) -> np.ndarray:
        """Global box ``(x, y, z, l, w, h, yaw)`` at time ``t`` (seconds from the first keyframe)."""
        xy = self.position + self.speed * t * np.array([math.cos(self.heading), math.sin(self.heading)])
        w, length, h = self.wlh
        return np.array([xy[0], xy[1], h / 2, length, w, h, self.heading])


def _token(seed: int, *key: object) -> str:
    return hashlib.md5("/".join(str(k) for k in (seed, *key)).encode()).hexdigest()


def _ego_pose(start: np.ndarray, heading: float, speed: float, yaw_rate: float, t: float) -> tuple[np.ndarray, float]:
    """Ego ``(x, y)`` and heading at time ``t`` on a constant speed / yaw-rate arc."""
    theta = heading + yaw_rate * t
    if abs(yaw_rate) < 1e-9:
        offset = speed * t * np.array([math.cos(heading), math.sin(heading)])
    else:
        r = speed / yaw_rate
        offset = r * np.array([math.sin(theta) - math.sin(heading), -(math.cos(theta) - math.cos(heading))])
    return start + offset, theta


def _attribute(spec: SyntheticObjectClass, speed: float, rng: np.random.Generator) -> str:
    if spec.category.startswith("vehicle.") and spec.category not in ("vehicle.bicycle", "vehicle.motorcycle"):
        return "vehicle.moving" if speed > 0.3 else str(rng.choice(["vehicle.parked", "vehicle.stopped"]))
    if spec.category in ("vehicle.bicycle", "vehicle.motorcycle"):
        return "cycle.with_rider" if speed > 0.3 or rng.random() < 0.3 else "cycle.without_rider"
    if spec.category.startswith("human.pedestrian.") and spec.category != "human.pedestrian.stroller":
        if speed > 0.3:
            return "pedestrian.moving"
        return "pedestrian.sitting_lying_down" if rng.random() < 0.2 else "pedestrian.standing"
    return ""


def _layout(
    rng: np.random.Generator,
    objects: tuple[SyntheticObjectClass, ...],
    road_start: np.ndarray,
    road_heading: float,
    path_length: float,
    ego_boxes: list[np.ndarray],
    times: list[float],
    viewpoints: list[tuple[float, np.ndarray]],
) -> tuple[list[_Object], np.ndarray]:
    """Place objects and clutter along the road.

    Objects never overlap each other or the ego at any scan time. The guaranteed objects (the first of each class
    with ``count[0] >= 1``) are placed first, smallest first, near the middle of the ego path, and stay in sight: no
    later object or pole may block the sight line from the sensor to their centre at any keyframe (``viewpoints``:
    ``(time, sensor position)``), and a guaranteed object is only placed where it is in sight.
    """
    along = np.array([math.cos(road_heading), math.sin(road_heading)])
    left = np.array([-along[1], along[0]])
    middle = path_length / 2
    placed: list[_Object] = []

    def to_global(s: float, d: float) -> np.ndarray:
        return road_start + s * along + d * left

    guaranteed: list[_Object] = []

    def collides(candidate: _Object) -> bool:
        for k, t in enumerate(times):
            box = candidate.box(t)[None]
            others = [o.box(t) for o in placed] + [ego_boxes[k]]
            if bev_boxes_overlap(box, np.stack(others), margin=0.3).any():
                return True
        return False

    def hidden(target: _Object, blockers: list[_Object]) -> bool:
        """The sight line to the target's centre is blocked at some keyframe."""
        for t, origin in viewpoints:
            aim = (target.box(t)[:3] - origin)[None]
            for other in blockers:
                entry, _ = ray_box_entry(origin, aim, other.box(t))
                if entry[0] < 1.0:
                    return True
        return False

    # Guaranteed objects first, smallest first, so that big vehicles are placed where they hide none of them.
    jobs = [(spec, 0, True) for spec in sorted(objects, key=lambda o: math.prod(o.size)) if spec.count[0] >= 1]
    for spec in objects:
        count = int(rng.integers(spec.count[0], spec.count[1] + 1))
        jobs += [(spec, index, False) for index in range(1 if spec.count[0] >= 1 else 0, count)]
    for spec, _index, near in jobs:
        for attempt in range(80 if near else 30):
            # Near the middle of the path: within 15 m (vehicles, range 50 m: widening to 39 m if crowded).
            spread = 15.0 + (0.3 * attempt if spec.zone == "lane" else 0.0)
            s = middle + rng.uniform(-spread, spread) if near else rng.uniform(-35.0, path_length + 45.0)
            speed = 0.0 if spec.max_speed == 0 or rng.random() < 0.5 else float(rng.uniform(0.5, spec.max_speed))
            if spec.zone == "lane":
                d = float(rng.choice(_LANES)) + rng.normal(0.0, 0.2)
                heading = road_heading + (math.pi if d > 0 else 0.0) + rng.normal(0.0, 0.03)
            elif spec.zone == "kerb":
                d = float(rng.choice([-1.0, 1.0])) * (_KERB + rng.uniform(-0.4, 0.4))
                heading = road_heading + math.pi / 2 + rng.normal(0.0, 0.1)
            else:
                d = float(rng.choice([-1.0, 1.0])) * rng.uniform(*_SIDEWALK)
                if speed > 0:
                    heading = road_heading + (0.0 if rng.random() < 0.5 else math.pi) + rng.normal(0.0, 0.1)
                else:
                    heading = float(rng.uniform(-math.pi, math.pi))
            wlh = np.asarray(spec.size) * (1.0 + 0.05 * np.clip(rng.normal(size=3), -2, 2))
            candidate = _Object(
                category=spec.category,
                wlh=wlh,
                position=to_global(s, d),
                heading=float(math.atan2(math.sin(heading), math.cos(heading))),
                speed=speed,
                reflectance=float(rng.uniform(*spec.reflectance)),
                attribute="",
            )
            if collides(candidate) or any(hidden(g, [candidate]) for g in guaranteed):
                continue
            if near and hidden(candidate, placed):
                continue
            candidate.attribute = _attribute(spec, speed, rng)
            placed.append(candidate)
            if near:
                guaranteed.append(candidate)
            break

    clutter = []
    for side in (-1.0, 1.0):  # building walls along both sides, with gaps
        s = -60.0
        while s < path_length + 70.0:
            length = rng.uniform(15.0, 40.0)
            depth, height = rng.uniform(5.0, 10.0), rng.uniform(4.0, 15.0)
            xy = to_global(s + length / 2, side * (_BUILDING + rng.uniform(0.0, 3.0) + depth / 2))
            clutter.append([xy[0], xy[1], height / 2, length, depth, height, road_heading])
            s += length + rng.uniform(2.0, 10.0)
    for _ in range(int(rng.integers(4, 10))):  # poles between kerb and sidewalk
        xy = to_global(rng.uniform(-40.0, path_length + 50.0), float(rng.choice([-1.0, 1.0])) * 8.6)
        height = rng.uniform(4.0, 8.0)
        pole = np.array([xy[0], xy[1], height / 2, 0.3, 0.3, height, 0.0])
        pole_object = _Object("pole", np.array([0.3, 0.3, height]), xy, 0.0, 0.0, 0.5, "")
        overlaps = bev_boxes_overlap(pole[None], np.stack([o.box(t) for o in placed for t in times])).any()
        if not overlaps and not any(hidden(g, [pole_object]) for g in guaranteed):
            clutter.append(pole.tolist())
    return placed, np.asarray(clutter, dtype=np.float64).reshape(-1, 7)


def _visibility_token(visible: float) -> str:
    return "1" if visible < 0.4 else "2" if visible < 0.6 else "3" if visible < 0.8 else "4"


def write_nuscenes(
    root: str | os.PathLike[str],
    *,
    num_scenes: int = 2,
    num_val_scenes: int = 1,
    keyframes_per_scene: int = 4,
    sweeps_per_keyframe: int = 2,
    azimuth_steps: int = 1024,
    range_noise: float = 0.01,
    version: str = "v1.0-mini",
    objects: tuple[SyntheticObjectClass, ...] = SYNTHETIC_OBJECTS,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Generate and write a synthetic nuScenes tree (layout and content in the module docstring).

    Args:
        root: Destination folder; must be empty or absent (see ``overwrite``).
        num_scenes: Scenes (one log each).
        num_val_scenes: The last scenes form ``synthetic_val``; the others ``synthetic_train``.
        keyframes_per_scene: Annotated samples per scene (2 Hz).
        sweeps_per_keyframe: Unannotated LiDAR scans between consecutive keyframes (the real 20 Hz LiDAR has 9),
            evenly spaced in time.
        azimuth_steps: Rays per ring; a scan has roughly ``0.75 * 32 * azimuth_steps`` points.
        range_noise: Standard deviation of the range noise in metres (0: exact geometry).
        version: Name of the table folder.
        objects: Object classes to place.
        seed: Seed of the tree; scene ``i`` depends only on ``(seed, i)`` and the other arguments.
        overwrite: Replace a synthetic tree already in ``root`` (never a folder without our README).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: Non-positive counts, ``num_val_scenes`` not in ``[1, num_scenes - 1]``, a negative noise or seed,
            or an unknown category in ``objects``.
        FileExistsError: ``root`` is not empty (see :func:`~.output_tree.prepare_output_root`).
    """
    for name, value in (
        ("num_scenes", num_scenes),
        ("keyframes_per_scene", keyframes_per_scene),
        ("azimuth_steps", azimuth_steps),
    ):
        positive_int(name, value)
    if isinstance(sweeps_per_keyframe, bool) or not isinstance(sweeps_per_keyframe, int) or sweeps_per_keyframe < 0:
        raise ValueError(f"`sweeps_per_keyframe` must be a non-negative integer, got {sweeps_per_keyframe!r}")
    if num_scenes < 2 or not 1 <= num_val_scenes < num_scenes:
        raise ValueError(
            f"need num_scenes >= 2 and 1 <= num_val_scenes < num_scenes (a train and a val scene), got "
            f"num_scenes={num_scenes!r}, num_val_scenes={num_val_scenes!r}"
        )
    if not range_noise >= 0:
        raise ValueError(f"`range_noise` must be >= 0, got {range_noise!r}")
    unknown = [o.category for o in objects if o.category not in NUSCENES_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown nuScenes categories in `objects`: {unknown}; known: {sorted(NUSCENES_CATEGORIES)}")
    seed = validate_seed(seed)
    out = prepare_output_root(root, overwrite=overwrite)
    sensor_spec = LidarSensor(
        num_rings=HDL32E.num_rings,
        elevation_deg=HDL32E.elevation_deg,
        azimuth_steps=int(azimuth_steps),
        height=HDL32E.height,
        max_range=HDL32E.max_range,
        range_noise=float(range_noise),
    )

    tables: dict[str, list[dict]] = {
        "category": [{"token": _token(seed, "category", n), "name": n, "description": d}
                     for n, d in NUSCENES_CATEGORIES.items()],
        "attribute": [{"token": _token(seed, "attribute", n), "name": n, "description": d}
                      for n, d in NUSCENES_ATTRIBUTES.items()],
        "visibility": [{"token": t, "level": lv, "description": d} for t, lv, d in NUSCENES_VISIBILITY],
        "sensor": [{"token": _token(seed, "sensor", "LIDAR_TOP"), "channel": "LIDAR_TOP", "modality": "lidar"}],
        **{name: [] for name in ("calibrated_sensor", "ego_pose", "instance", "log", "map", "sample",
                                 "sample_annotation", "sample_data", "scene")},
    }  # fmt: skip
    category_token = {r["name"]: r["token"] for r in tables["category"]}
    attribute_token = {r["name"]: r["token"] for r in tables["attribute"]}
    lidar_to_ego = quaternion_to_matrix(LIDAR_TOP_ROTATION)
    sensor_offset = np.asarray(LIDAR_TOP_TRANSLATION)
    scene_names = [f"synthetic-{i + 1:04d}" for i in range(int(num_scenes))]
    base_time = 1_533_110_400_000_000  # 2018-08-01 08:00:00 UTC in microseconds

    for scene_index, scene_name in enumerate(scene_names):
        rng = item_rng(seed, f"nuscenes/{scene_name}/layout")
        log_token = _token(seed, "log", scene_index)
        logfile = f"n000-2018-08-01-{8 + scene_index // 60:02d}-{scene_index % 60:02d}-00+0000"
        tables["log"].append(
            {
                "token": log_token,
                "logfile": logfile,
                "vehicle": "n000",
                "date_captured": "2018-08-01",
                "location": "synthetic-town",
            }
        )
        cs_token = _token(seed, "calibrated_sensor", scene_index)
        tables["calibrated_sensor"].append(
            {
                "token": cs_token,
                "sensor_token": tables["sensor"][0]["token"],
                "translation": list(LIDAR_TOP_TRANSLATION),
                "rotation": list(LIDAR_TOP_ROTATION),
                "camera_intrinsic": [],
            }
        )

        # Timeline: keyframe k at k * 0.5 s, sweeps evenly spaced in between.
        step = KEYFRAME_INTERVAL / (sweeps_per_keyframe + 1)
        times, keyframe_of = [], []
        for k in range(int(keyframes_per_scene)):
            if k > 0:
                for j in range(1, sweeps_per_keyframe + 1):
                    times.append((k - 1) * KEYFRAME_INTERVAL + j * step)
                    keyframe_of.append(-1)
            times.append(k * KEYFRAME_INTERVAL)
            keyframe_of.append(k)
        start_time = base_time + scene_index * 60_000_000

        road_heading = float(rng.uniform(-math.pi, math.pi))
        road_start = rng.uniform(300.0, 1800.0, size=2)
        along = np.array([math.cos(road_heading), math.sin(road_heading)])
        ego_start = road_start + _EGO_LANE * np.array([-along[1], along[0]])
        ego_speed, yaw_rate = float(rng.uniform(4.0, 8.0)), float(rng.uniform(-0.03, 0.03))
        poses = [_ego_pose(ego_start, road_heading, ego_speed, yaw_rate, t) for t in times]
        ego_boxes = [np.array([xy[0], xy[1], 0.9, 4.6 + 1.0, 1.9 + 0.6, 1.8, th]) for xy, th in poses]
        path_length = ego_speed * times[-1]
        viewpoints = [
            (t, np.array([xy[0], xy[1], 0.0]) + quaternion_to_matrix(yaw_quaternion(th)) @ sensor_offset)
            for t, (xy, th), k in zip(times, poses, keyframe_of)
            if k >= 0
        ]
        placed, clutter = _layout(
            rng, tuple(objects), road_start, road_heading, path_length, ego_boxes, times, viewpoints
        )

        # Samples and instances.
        sample_tokens = [_token(seed, "sample", scene_index, k) for k in range(int(keyframes_per_scene))]
        scene_token = _token(seed, "scene", scene_index)
        for k, token in enumerate(sample_tokens):
            tables["sample"].append(
                {
                    "token": token,
                    "timestamp": start_time + round(k * KEYFRAME_INTERVAL * 1e6),
                    "prev": sample_tokens[k - 1] if k > 0 else "",
                    "next": sample_tokens[k + 1] if k + 1 < len(sample_tokens) else "",
                    "scene_token": scene_token,
                }
            )
        tables["scene"].append(
            {
                "token": scene_token,
                "log_token": log_token,
                "nbr_samples": len(sample_tokens),
                "first_sample_token": sample_tokens[0],
                "last_sample_token": sample_tokens[-1],
                "name": scene_name,
                "description": f"Synthetic road scene {scene_index + 1} (lightning_hpml), ego at {ego_speed:.1f} m/s",
            }
        )
        ann_tokens = [[_token(seed, "ann", scene_index, m, k) for k in range(len(sample_tokens))] for m in
                      range(len(placed))]  # fmt: skip
        for m, obj in enumerate(placed):
            tables["instance"].append(
                {
                    "token": _token(seed, "instance", scene_index, m),
                    "category_token": category_token[obj.category],
                    "nbr_annotations": len(sample_tokens),
                    "first_annotation_token": ann_tokens[m][0],
                    "last_annotation_token": ann_tokens[m][-1],
                }
            )

        # LiDAR scans.
        sd_tokens = [_token(seed, "sample_data", scene_index, i) for i in range(len(times))]
        for i, (t, (xy, theta)) in enumerate(zip(times, poses)):
            timestamp = start_time + round(t * 1e6)
            ego_rotation = yaw_quaternion(theta)
            ego_matrix = quaternion_to_matrix(ego_rotation)
            lidar_to_global = ego_matrix @ lidar_to_ego
            sensor_position = ego_matrix @ sensor_offset + np.array([xy[0], xy[1], 0.0])
            boxes = np.stack([o.box(t) for o in placed]) if placed else np.zeros((0, 7))
            boxes_local = boxes.copy()
            boxes_local[:, :3] -= sensor_position
            clutter_local = clutter.copy()
            clutter_local[:, :3] -= sensor_position
            scene = LidarScene(
                boxes=boxes_local,
                names=[o.category for o in placed],
                reflectance=np.array([o.reflectance for o in placed]),
                clutter=clutter_local,
                clutter_reflectance=item_rng(seed, f"nuscenes/{scene_name}/clutter").uniform(0.25, 0.7, len(clutter)),
                ground_z=-float(sensor_position[2]),
            )
            mounted = _MountedSensor(
                num_rings=sensor_spec.num_rings,
                elevation_deg=sensor_spec.elevation_deg,
                azimuth_steps=sensor_spec.azimuth_steps,
                height=sensor_spec.height,
                max_range=sensor_spec.max_range,
                range_noise=sensor_spec.range_noise,
                rotation=tuple(float(v) for v in lidar_to_global.ravel()),
            )
            scan_rng = item_rng(seed, f"nuscenes/{scene_name}/scan/{i}")
            scan = scan_scene(scene, mounted, scan_rng)
            xyz = scan.points[:, :3].astype(np.float64) @ lidar_to_global  # scan frame -> LiDAR frame
            elevation = np.arcsin(np.clip(xyz[:, 2] / np.linalg.norm(xyz, axis=1), -1.0, 1.0))
            low, high = np.deg2rad(sensor_spec.elevation_deg)
            ring = np.rint((high - elevation) / (high - low) * (sensor_spec.num_rings - 1))
            points = np.concatenate([xyz, 255.0 * scan.points[:, 3:4], ring[:, None]], axis=1)

            k = keyframe_of[i]
            folder = "samples" if k >= 0 else "sweeps"
            filename = f"{folder}/LIDAR_TOP/{logfile}__LIDAR_TOP__{timestamp}.pcd.bin"
            write_lidar_bin(out / filename, points)
            # A sweep's sample is the next keyframe's (the devkit interpolates boxes between sample.prev and it).
            owner = k if k >= 0 else next(kk for kk in keyframe_of[i + 1 :] if kk >= 0)
            tables["ego_pose"].append(
                {
                    "token": sd_tokens[i],
                    "timestamp": timestamp,
                    "rotation": [float(v) for v in ego_rotation],
                    "translation": [float(xy[0]), float(xy[1]), 0.0],
                }
            )
            tables["sample_data"].append(
                {
                    "token": sd_tokens[i],
                    "sample_token": sample_tokens[owner],
                    "ego_pose_token": sd_tokens[i],
                    "calibrated_sensor_token": cs_token,
                    "timestamp": timestamp,
                    "fileformat": "pcd",
                    "is_key_frame": k >= 0,
                    "height": 0,
                    "width": 0,
                    "filename": filename,
                    "prev": sd_tokens[i - 1] if i > 0 else "",
                    "next": sd_tokens[i + 1] if i + 1 < len(times) else "",
                }
            )
            if k < 0:
                continue
            counts = np.bincount(scan.source[scan.source >= 0], minlength=len(placed))
            for m, obj in enumerate(placed):
                visible = 1.0 - occluded_fraction(scene, m, np.zeros(3), scan_rng, samples=32)
                box = boxes[m]
                tables["sample_annotation"].append(
                    {
                        "token": ann_tokens[m][k],
                        "sample_token": sample_tokens[k],
                        "instance_token": _token(seed, "instance", scene_index, m),
                        "visibility_token": _visibility_token(visible),
                        "attribute_tokens": [attribute_token[obj.attribute]] if obj.attribute else [],
                        "translation": [float(v) for v in box[:3]],
                        "size": [float(v) for v in obj.wlh],
                        "rotation": [float(v) for v in yaw_quaternion(obj.heading)],
                        "prev": ann_tokens[m][k - 1] if k > 0 else "",
                        "next": ann_tokens[m][k + 1] if k + 1 < len(sample_tokens) else "",
                        "num_lidar_pts": int(counts[m]),
                        "num_radar_pts": 0,
                    }
                )

    map_token = _token(seed, "map", 0)
    tables["map"].append(
        {
            "token": map_token,
            "log_tokens": [r["token"] for r in tables["log"]],
            "category": "semantic_prior",
            "filename": f"maps/{map_token}.png",
        }
    )
    (out / "maps").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(out / "maps" / f"{map_token}.png")
    table_dir = out / version
    table_dir.mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (table_dir / f"{name}.json").write_text(json.dumps(records, indent=0), encoding="utf-8")
    splits = {
        SYNTHETIC_TRAIN_SPLIT: scene_names[: num_scenes - num_val_scenes],
        SYNTHETIC_VAL_SPLIT: scene_names[num_scenes - num_val_scenes :],
    }
    (table_dir / "splits.json").write_text(json.dumps(splits, indent=2), encoding="utf-8")

    write_synthetic_readme(
        out,
        generator="lightning_hpml.datamodules.synthetic.nuscenes_writer.write_nuscenes",
        description=f"nuScenes {version} (LiDAR only: LIDAR_TOP keyframes and sweeps, 13 tables, splits.json)",
        parameters={
            "num_scenes": int(num_scenes),
            "num_val_scenes": int(num_val_scenes),
            "keyframes_per_scene": int(keyframes_per_scene),
            "sweeps_per_keyframe": int(sweeps_per_keyframe),
            "azimuth_steps": int(azimuth_steps),
            "range_noise": float(range_noise),
            "version": version,
            "objects": [o.category for o in objects],
            "seed": seed,
        },
        content=(
            "Content: procedural road scenes (vehicles, pedestrians, bicycles, barriers, cones as boxes, walls and\n"
            "poles) in the global frame, scanned by an exact ray-cast 32-ring LiDAR on a moving ego vehicle."
        ),
    )
    return out
