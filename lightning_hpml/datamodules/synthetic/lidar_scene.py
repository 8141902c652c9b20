"""Procedural street scenes and an exact ray-cast LiDAR scan of them, for the synthetic KITTI 3D object tree.

A scene is a flat road (the ground plane ``z = -sensor height`` in the LiDAR frame) with cars, pedestrians and
cyclists as oriented boxes of KITTI's mean class sizes (l x w x h: Car 3.9 x 1.6 x 1.56 m, Pedestrian 0.8 x 0.6 x
1.73 m, Cyclist 1.76 x 0.6 x 1.73 m, each jittered), placed without overlap in front of the sensor (x 5..60 m,
|y| < 25 m), plus unlabelled clutter (poles, building walls beyond the road) that occludes like real structures.

The scan imitates a Velodyne HDL-64E: 64 elevation rings between -24.8 and +2 degrees, a configurable number of
azimuth steps over 360 degrees, the sensor 1.73 m above the road. Every ray is intersected exactly with the plane and
every box (slab test in the box frame) and the nearest hit is kept, so objects occlude each other and the ground as
in a real scan, and every object point lies on its box's surface. Reflectance depends on the surface: asphalt is
dark with bright lane markings, each object has its own paint brightness scaled by the incidence angle (car roofs,
glass, darker), clutter is mid-grey. A small Gaussian range noise (1 cm by default) is added along each ray.

Why boxes: a detector learns localisation from where points lie relative to the box, and with exact surfaces the
labels are exactly consistent with the points, which makes the data learnable and the tests sharp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lightning_hpml.datamodules.formats.kitti_object import bev_boxes_overlap

__all__ = [
    "CLASS_TEMPLATES",
    "SOURCE_CLUTTER",
    "SOURCE_GROUND",
    "LidarScan",
    "LidarScene",
    "LidarSensor",
    "ObjectTemplate",
    "occluded_fraction",
    "random_lidar_scene",
    "ray_box_entry",
    "scan_scene",
]

SOURCE_GROUND = -1
"""``LidarScan.source`` of a ground point."""
SOURCE_CLUTTER = -2
"""``LidarScan.source`` of a point on unlabelled clutter (poles, buildings)."""


@dataclass(frozen=True)
class ObjectTemplate:
    """Size distribution and appearance of one object class.

    Attributes:
        size: Mean ``(l, w, h)`` in metres (KITTI class means).
        jitter: Relative standard deviation of each size.
        count: ``(min, max)`` objects of this class per scene (inclusive).
        reflectance: ``(min, max)`` of the per-object base reflectance.
        road_aligned: Probability that the heading follows the road (0 or pi, +-0.15 rad) instead of uniform.
    """

    size: tuple[float, float, float]
    jitter: float
    count: tuple[int, int]
    reflectance: tuple[float, float]
    road_aligned: float


CLASS_TEMPLATES: dict[str, ObjectTemplate] = {
    "Car": ObjectTemplate((3.9, 1.6, 1.56), 0.06, (3, 9), (0.15, 0.8), 0.75),
    "Pedestrian": ObjectTemplate((0.8, 0.6, 1.73), 0.06, (0, 4), (0.2, 0.5), 0.0),
    "Cyclist": ObjectTemplate((1.76, 0.6, 1.73), 0.05, (0, 3), (0.3, 0.6), 0.6),
}
"""Default object classes of the synthetic scenes."""


@dataclass(frozen=True)
class LidarSensor:
    """A spinning multi-ring LiDAR at the LiDAR-frame origin (x forward, y left, z up).

    Attributes:
        num_rings: Elevation rings (HDL-64E: 64).
        elevation_deg: Lowest and highest ring elevation in degrees (HDL-64E: -24.8, +2.0).
        azimuth_steps: Rays per ring over 360 degrees (the real sensor: about 2000 returns per ring at 10 Hz).
        height: Sensor height above the road in metres (KITTI: 1.73); the ground is ``z = -height``.
        max_range: Hits beyond this distance give no return (HDL-64E: about 120 m; 80 m covers KITTI labels).
        range_noise: Standard deviation of the range noise in metres.
    """

    num_rings: int = 64
    elevation_deg: tuple[float, float] = (-24.8, 2.0)
    azimuth_steps: int = 1024
    height: float = 1.73
    max_range: float = 80.0
    range_noise: float = 0.01

    def __post_init__(self) -> None:
        if self.num_rings < 1 or self.azimuth_steps < 1:
            raise ValueError(
                f"`num_rings` and `azimuth_steps` must be positive, got {self.num_rings}, {self.azimuth_steps}"
            )
        low, high = self.elevation_deg
        if not -90 < low <= high < 90:
            raise ValueError(f"`elevation_deg` must be (low, high) within (-90, 90), got {self.elevation_deg}")
        if not (self.height > 0 and self.max_range > 0 and self.range_noise >= 0):
            raise ValueError("`height` and `max_range` must be positive and `range_noise` non-negative")

    def directions(self) -> np.ndarray:
        """Unit ray directions ``(num_rings * azimuth_steps, 3)``, ring-major (top ring first)."""
        elevation = np.deg2rad(np.linspace(self.elevation_deg[1], self.elevation_deg[0], self.num_rings))
        azimuth = np.linspace(-np.pi, np.pi, self.azimuth_steps, endpoint=False)
        el, az = np.meshgrid(elevation, azimuth, indexing="ij")
        return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)


@dataclass
class LidarScene:
    """Boxes in the LiDAR frame ``(x, y, z_centre, l, w, h, yaw)``.

    Attributes:
        boxes: ``(K, 7)`` labelled objects.
        names: ``K`` class names.
        reflectance: ``(K,)`` base reflectance of each object.
        clutter: ``(C, 7)`` unlabelled boxes (poles, building walls).
        clutter_reflectance: ``(C,)``.
        ground_z: Height of the road plane.
    """

    boxes: np.ndarray
    names: list[str]
    reflectance: np.ndarray
    clutter: np.ndarray
    clutter_reflectance: np.ndarray
    ground_z: float


@dataclass
class LidarScan:
    """A scan: ``points`` float32 ``(N, 4)`` x, y, z, reflectance; ``source`` int ``(N,)``: the object index ``k``,
    :data:`SOURCE_GROUND` or :data:`SOURCE_CLUTTER`."""

    points: np.ndarray
    source: np.ndarray


def _sample_yaw(rng: np.random.Generator, road_aligned: float) -> float:
    if rng.random() < road_aligned:
        return float(math.pi * rng.integers(0, 2) + rng.normal(0.0, 0.15))
    return float(rng.uniform(-math.pi, math.pi))


def random_lidar_scene(
    rng: np.random.Generator,
    *,
    sensor: LidarSensor | None = None,
    templates: dict[str, ObjectTemplate] | None = None,
    x_range: tuple[float, float] = (5.0, 60.0),
    y_limit: float = 25.0,
    visible_half_angle_deg: float = 45.0,
    num_poles: tuple[int, int] = (0, 6),
    buildings: bool = True,
    margin: float = 0.4,
) -> LidarScene:
    """Draw a scene: objects of each class on the road, then clutter around them, nothing overlapping.

    Object centres are uniform in ``x_range`` and ``|y| < min(y_limit, x tan(visible_half_angle) + 3 m)``, so most
    objects are in the camera's view (KITTI labels only those) while some are cut by the image border.

    Args:
        rng: Source of randomness (one per frame keeps frames independent).
        sensor: Sets the ground height; default :class:`LidarSensor`.
        templates: Classes to place; default :data:`CLASS_TEMPLATES`.
        x_range: Range of object centre x (forward) in metres.
        y_limit: Largest object centre ``|y|`` in metres.
        visible_half_angle_deg: Half-angle of the wedge the centres are drawn from (the camera's is about 40).
        num_poles: ``(min, max)`` poles per scene.
        buildings: Add a building wall on each side beyond ``y_limit``.
        margin: Smallest bird's-eye gap between any two boxes, in metres.
    """
    sensor = sensor or LidarSensor()
    templates = CLASS_TEMPLATES if templates is None else templates
    ground = -sensor.height
    boxes: list[np.ndarray] = []
    names: list[str] = []
    reflectance: list[float] = []
    tan_half = math.tan(math.radians(visible_half_angle_deg))

    def free(box: np.ndarray, others: list[np.ndarray]) -> bool:
        return not others or not bev_boxes_overlap(box[None], np.stack(others), margin=margin / 2).any()

    for name, template in templates.items():
        count = int(rng.integers(template.count[0], template.count[1] + 1))
        for _ in range(count):
            for _attempt in range(30):
                size = np.asarray(template.size) * (1.0 + template.jitter * np.clip(rng.normal(size=3), -2, 2))
                x = rng.uniform(*x_range)
                half_width = min(y_limit, x * tan_half + 3.0)
                y = rng.uniform(-half_width, half_width)
                box = np.array([x, y, ground + size[2] / 2, *size, _sample_yaw(rng, template.road_aligned)])
                if free(box, boxes):
                    boxes.append(box)
                    names.append(name)
                    reflectance.append(float(rng.uniform(*template.reflectance)))
                    break

    clutter: list[np.ndarray] = []
    clutter_reflectance: list[float] = []
    if buildings:
        for side in (-1.0, 1.0):
            length, depth, height = rng.uniform(25, 60), rng.uniform(4, 10), rng.uniform(4, 12)
            y = side * (y_limit + 3.0 + rng.uniform(0, 6) + depth / 2)
            x = rng.uniform(-10, 50)
            clutter.append(np.array([x, y, ground + height / 2, length, depth, height, 0.0]))
            clutter_reflectance.append(float(rng.uniform(0.25, 0.6)))
    for _ in range(int(rng.integers(num_poles[0], num_poles[1] + 1))):
        for _attempt in range(20):
            height = rng.uniform(3.0, 7.0)
            pole = np.array(
                [
                    rng.uniform(3, 70),
                    rng.uniform(-y_limit, y_limit),
                    ground + height / 2,
                    0.3,
                    0.3,
                    height,
                    rng.uniform(-math.pi, math.pi),
                ]
            )
            if free(pole, boxes + clutter):
                clutter.append(pole)
                clutter_reflectance.append(float(rng.uniform(0.3, 0.7)))
                break

    return LidarScene(
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 7),
        names=names,
        reflectance=np.array(reflectance, dtype=np.float64),
        clutter=np.array(clutter, dtype=np.float64).reshape(-1, 7),
        clutter_reflectance=np.array(clutter_reflectance, dtype=np.float64),
        ground_z=ground,
    )


def ray_box_entry(origin: np.ndarray, directions: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ray / oriented-box intersection (slab test in the box frame).

    Args:
        origin: Ray origin ``(3,)``, outside the box.
        directions: ``(R, 3)`` directions (any length; distances are in units of the direction length).
        box: One LiDAR box ``(7,)``.

    Returns:
        ``t`` ``(R,)``: the entry distance, ``inf`` where the ray misses (or starts inside); ``axis`` ``(R,)``:
        the box axis (0 = length, 1 = width, 2 = height) whose face is entered, i.e. the face normal.
    """
    cos, sin = math.cos(box[6]), math.sin(box[6])
    offset = np.asarray(origin, dtype=np.float64) - box[:3]
    o = np.array([cos * offset[0] + sin * offset[1], -sin * offset[0] + cos * offset[1], offset[2]])
    d = np.stack(
        [
            cos * directions[:, 0] + sin * directions[:, 1],
            -sin * directions[:, 0] + cos * directions[:, 1],
            directions[:, 2],
        ],
        axis=1,
    )
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    half = box[3:6] / 2
    t1 = (-half - o) / d
    t2 = (half - o) / d
    near = np.minimum(t1, t2)
    far = np.maximum(t1, t2)
    t_enter = near.max(axis=1)
    t_exit = far.min(axis=1)
    hit = (t_enter <= t_exit) & (t_enter > 0)
    return np.where(hit, t_enter, np.inf), near.argmax(axis=1)


def scan_scene(scene: LidarScene, sensor: LidarSensor, rng: np.random.Generator) -> LidarScan:
    """Ray-cast ``sensor`` (at the origin) against ``scene``; the nearest hit of each ray is one point.

    Rays that hit nothing within ``max_range`` (the sky, mostly) give no point, as with a real sensor.
    """
    directions = sensor.directions()
    num_rays = len(directions)
    best = np.full(num_rays, np.inf)
    source = np.full(num_rays, -3, dtype=np.int64)
    cos_incidence = np.ones(num_rays)
    top_face = np.zeros(num_rays, dtype=bool)

    with np.errstate(divide="ignore"):
        t_ground = np.where(directions[:, 2] < 0, scene.ground_z / directions[:, 2], np.inf)
    best[:] = t_ground
    source[np.isfinite(t_ground)] = SOURCE_GROUND
    cos_incidence = np.abs(directions[:, 2])

    origin = np.zeros(3)
    all_boxes = [(k, box) for k, box in enumerate(scene.boxes)] + [(SOURCE_CLUTTER, box) for box in scene.clutter]
    base = np.concatenate([scene.reflectance, scene.clutter_reflectance])
    base_of_ray = np.full(num_rays, np.nan)
    for order, (label, box) in enumerate(all_boxes):
        t, axis = ray_box_entry(origin, directions, box)
        closer = t < best
        if not closer.any():
            continue
        best[closer] = t[closer]
        source[closer] = label
        base_of_ray[closer] = base[order]
        # |cos| of the incidence angle: the direction's component along the entered face's normal.
        cos_y, sin_y = math.cos(box[6]), math.sin(box[6])
        normals = np.array([[cos_y, sin_y, 0.0], [-sin_y, cos_y, 0.0], [0.0, 0.0, 1.0]])
        cos_incidence[closer] = np.abs(np.einsum("rd,rd->r", directions[closer], normals[axis[closer]]))
        top_face[closer] = axis[closer] == 2

    keep = best <= sensor.max_range
    t = best[keep] + rng.normal(0.0, sensor.range_noise, size=int(keep.sum())) if sensor.range_noise else best[keep]
    xyz = directions[keep] * t[:, None]
    source = source[keep]
    cos_incidence = cos_incidence[keep]

    reflectance = np.empty(len(xyz))
    on_ground = source == SOURCE_GROUND
    # Asphalt is dark; lane markings every 3.6 m across the road are bright.
    lane = np.abs(((xyz[on_ground, 1] + 1.8) % 3.6) - 1.8) > 1.7
    reflectance[on_ground] = np.where(lane, 0.75, 0.12) + rng.normal(0.0, 0.03, size=int(on_ground.sum()))
    solid = ~on_ground
    shade = np.where(top_face[keep][solid], 0.5, 1.0)
    reflectance[solid] = base_of_ray[keep][solid] * shade * (0.4 + 0.6 * cos_incidence[solid])
    reflectance[solid] += rng.normal(0.0, 0.02, size=int(solid.sum()))
    points = np.concatenate([xyz, np.clip(reflectance, 0.0, 1.0)[:, None]], axis=1).astype(np.float32)
    return LidarScan(points=points, source=source)


def occluded_fraction(
    scene: LidarScene, index: int, viewpoint: np.ndarray, rng: np.random.Generator, samples: int = 64
) -> float:
    """Fraction of sight lines from ``viewpoint`` to random points of box ``index`` blocked by another box.

    KITTI's occlusion level is judged in the camera image; this measures it geometrically from the camera centre
    (``viewpoint``, LiDAR frame): a sight line is blocked if it enters another object or clutter box before box
    ``index``.
    """
    box = scene.boxes[index]
    local = (rng.random((samples, 3)) - 0.5) * box[3:6]
    cos, sin = math.cos(box[6]), math.sin(box[6])
    targets = (
        np.stack([cos * local[:, 0] - sin * local[:, 1], sin * local[:, 0] + cos * local[:, 1], local[:, 2]], axis=1)
        + box[:3]
    )
    directions = targets - viewpoint
    t_own, _ = ray_box_entry(viewpoint, directions, box)
    t_own = np.where(np.isfinite(t_own), t_own, 1.0)
    blocked = np.zeros(samples, dtype=bool)
    others = [b for k, b in enumerate(scene.boxes) if k != index] + list(scene.clutter)
    for other in others:
        t, _ = ray_box_entry(viewpoint, directions, other)
        blocked |= t < t_own
    return float(blocked.mean())
