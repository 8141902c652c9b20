"""Write a synthetic KITTI 3D object tree in the benchmark's real on-disk layout.

The KITTI object loader must read this tree exactly as it reads the real download (Geiger et al., CVPR 2012)::

    <root>/training/velodyne/NNNNNN.bin      float32 x, y, z, reflectance (ray-cast scan, lidar_scene.py)
    <root>/training/label_2/NNNNNN.txt       15-field labels, DontCare included
    <root>/training/calib/NNNNNN.txt         P0..P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo
    <root>/training/image_2/NNNNNN.png       colour image of the scene, 375 x 1242 by default
    <root>/testing/{velodyne,calib,image_2}/NNNNNN.*   (no labels, like the real testing set)
    <root>/ImageSets/{train,val,test}.txt    train/val: a seeded split of training/; test: all of testing/
    <root>/SYNTHETIC_README.txt

Calibration is the real one of the KITTI drive 2011_09_26 (the values of training frame 000000), so ``P2`` projects
as on real data; for another image size the intrinsics are scaled. Labels are computed from the scene geometry:

- boxes are rounded to the label file's two decimals *before* the scan, so the boxes read back from ``label_2``
  are exactly the surfaces the points lie on;
- ``bbox`` = the 8 projected corners' extent, clipped to the image; ``truncated`` = the fraction of that unclipped
  box's area outside the image; objects whose box misses the image get no label (as in KITTI, which labels only
  objects visible in image 2);
- ``occluded`` = 0 / 1 / 2 for a fraction of blocked sight lines from the camera centre below 0.15 / below 0.5 /
  above (see :func:`~.lidar_scene.occluded_fraction`);
- ``alpha`` = rotation_y - atan2(x, z) of the location;
- objects farther than ``dontcare_distance`` become ``DontCare`` regions with probability ``dontcare_probability``,
  written with KITTI's DontCare values (-1, -1, -10, bbox, -1 x 3, -1000 x 3, -10).

The image is cheap but consistent: sky and road split at the projected horizon, boxes drawn far to near as filled
silhouettes (the convex hull of their projected corners) in per-object colours.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lightning_hpml.datamodules.formats.kitti_object import (
    KittiCalibration,
    boxes_to_corners,
    camera_boxes_to_lidar,
    lidar_boxes_to_camera,
    lidar_boxes_to_image_bbox,
    observation_angle,
    write_calib,
    write_image_set,
    write_label,
    write_velodyne,
)
from lightning_hpml.datamodules.synthetic.lidar_scene import (
    LidarScene,
    LidarSensor,
    occluded_fraction,
    random_lidar_scene,
    scan_scene,
)
from lightning_hpml.datamodules.synthetic.output_tree import (
    item_rng,
    positive_int,
    prepare_output_root,
    validate_seed,
    write_synthetic_readme,
)

__all__ = ["KITTI_IMAGE_SIZE", "kitti_calibration", "make_kitti_object_frame", "write_kitti_object"]

KITTI_IMAGE_SIZE = (375, 1242)
"""``(height, width)`` of KITTI's image 2 for the 2011_09_26 drives."""

_CALIB_2011_09_26 = {
    "P0": [721.5377, 0, 609.5593, 0, 0, 721.5377, 172.854, 0, 0, 0, 1, 0],
    "P1": [721.5377, 0, 609.5593, -387.5744, 0, 721.5377, 172.854, 0, 0, 0, 1, 0],
    "P2": [721.5377, 0, 609.5593, 44.85728, 0, 721.5377, 172.854, 0.2163791, 0, 0, 1, 0.002745884],
    "P3": [721.5377, 0, 609.5593, -339.5242, 0, 721.5377, 172.854, 2.199936, 0, 0, 1, 0.002729905],
    "R0_rect": [
        0.9999239,
        0.00983776,
        -0.007445048,
        -0.009869795,
        0.9999421,
        -0.004278459,
        0.007402527,
        0.004351614,
        0.9999631,
    ],
    "Tr_velo_to_cam": [
        0.007533745,
        -0.9999714,
        -0.000616602,
        -0.004069766,
        0.01480249,
        0.0007280733,
        -0.9998902,
        -0.07631618,
        0.9998621,
        0.00752379,
        0.01480755,
        -0.2717806,
    ],
    "Tr_imu_to_velo": [
        0.9999976,
        0.0007553071,
        -0.002035826,
        -0.8086759,
        -0.0007854027,
        0.9998898,
        -0.01482298,
        0.3195559,
        0.002024406,
        0.01482454,
        0.9998881,
        -0.7997231,
    ],
}
_OCCLUSION_LEVELS = (0.15, 0.5)
_SKY, _ROAD = (150, 185, 225), (92, 92, 96)
_DONTCARE = {"truncated": -1.0, "occluded": -1, "alpha": -10.0, "dimensions": -1.0, "location": -1000.0, "ry": -10.0}


def kitti_calibration(image_size: tuple[int, int] = KITTI_IMAGE_SIZE) -> KittiCalibration:
    """The real calibration of KITTI drive 2011_09_26, with the camera intrinsics scaled to ``image_size``."""
    entries = {
        k: np.array(v, dtype=np.float64).reshape((3, 3) if k == "R0_rect" else (3, 4))
        for k, v in _CALIB_2011_09_26.items()
    }
    sy, sx = image_size[0] / KITTI_IMAGE_SIZE[0], image_size[1] / KITTI_IMAGE_SIZE[1]
    for key in ("P0", "P1", "P2", "P3"):
        entries[key][0] *= sx
        entries[key][1] *= sy
    return KittiCalibration(**entries)


def _quantise_boxes(boxes: np.ndarray, calib: KittiCalibration, decimals: int) -> tuple[np.ndarray, ...]:
    """Round the camera-frame label values as the file will, and return them with the LiDAR boxes they mean."""
    location, dimensions, rotation_y = lidar_boxes_to_camera(boxes, calib)
    location, dimensions, rotation_y = (np.round(a, decimals) for a in (location, dimensions, rotation_y))
    return camera_boxes_to_lidar(location, dimensions, rotation_y, calib), location, dimensions, rotation_y


def _convex_hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Monotone-chain convex hull of a few 2-D points, as a closed polygon for PIL."""
    pts = sorted(set(map(tuple, np.round(points, 3).tolist())))
    if len(pts) < 3:
        return [tuple(p) for p in pts]

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _render_image(
    scene: LidarScene, calib: KittiCalibration, image_size: tuple[int, int], rng: np.random.Generator
) -> Image.Image:
    height, width = image_size
    image = Image.new("RGB", (width, height), _ROAD)
    draw = ImageDraw.Draw(image)
    horizon_uv, _ = calib.lidar_to_image(np.array([[1000.0, 0.0, scene.ground_z]]))
    draw.rectangle([0, 0, width, float(np.clip(horizon_uv[0, 1], 0, height))], fill=_SKY)
    boxes = np.concatenate([scene.boxes, scene.clutter])
    colours = [tuple(int(c) for c in rng.integers(20, 235, size=3)) for _ in range(len(boxes))]
    # Clutter may extend behind the camera: keep the part in front (clutter walls are axis-aligned).
    drawable = []
    for box, colour in zip(boxes, colours):
        box = box.copy()
        if abs(math.sin(box[6])) < 1e-9:
            x0, x1 = max(box[0] - box[3] / 2, 1.0), box[0] + box[3] / 2
            if x1 <= x0:
                continue
            box[0], box[3] = (x0 + x1) / 2, x1 - x0
        drawable.append((float(np.hypot(box[0], box[1])), box, colour))
    for _, box, colour in sorted(drawable, key=lambda d: -d[0]):
        corners = boxes_to_corners(box[None])[0]
        uv, depth = calib.lidar_to_image(corners)
        if (depth <= 0.1).any():
            continue
        draw.polygon(_convex_hull(uv), fill=colour, outline=tuple(c // 2 for c in colour))
    return image


def make_kitti_object_frame(
    rng: np.random.Generator,
    calib: KittiCalibration,
    *,
    sensor: LidarSensor,
    image_size: tuple[int, int] = KITTI_IMAGE_SIZE,
    dontcare_distance: float = 45.0,
    dontcare_probability: float = 0.5,
    decimals: int = 2,
    scene_options: dict | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], Image.Image, LidarScene, np.ndarray]:
    """Draw, scan, label and render one frame.

    Returns:
        ``points`` float32 ``(N, 4)``, the label dict (:func:`~..formats.kitti_object.read_label` keys), the image,
        the scene (boxes quantised to the label precision) and the per-point source (object index, -1 ground,
        -2 clutter).
    """
    scene = random_lidar_scene(rng, sensor=sensor, **(scene_options or {}))
    boxes, location, dimensions, rotation_y = _quantise_boxes(scene.boxes, calib, decimals)
    scene.boxes = boxes
    scan = scan_scene(scene, sensor, rng)

    full = lidar_boxes_to_image_bbox(boxes, calib, None)
    clipped = lidar_boxes_to_image_bbox(boxes, calib, image_size)
    area_full = np.prod(np.maximum(full[:, 2:] - full[:, :2], 1e-9), axis=1)
    area_clipped = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0.0), axis=1)
    visible = (clipped[:, 2] - clipped[:, 0] >= 1.0) & (clipped[:, 3] - clipped[:, 1] >= 1.0)
    camera_centre = calib.rect_to_lidar(np.zeros((1, 3)))[0]

    rows: dict[str, list] = {
        k: [] for k in ("name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location", "rotation_y")
    }
    alpha = np.round(observation_angle(location, rotation_y), decimals)
    for k in np.flatnonzero(visible):
        distance = float(np.hypot(boxes[k, 0], boxes[k, 1]))
        if distance > dontcare_distance and rng.random() < dontcare_probability:
            rows["name"].append("DontCare")
            rows["truncated"].append(_DONTCARE["truncated"])
            rows["occluded"].append(_DONTCARE["occluded"])
            rows["alpha"].append(_DONTCARE["alpha"])
            rows["bbox"].append(clipped[k])
            rows["dimensions"].append(np.full(3, _DONTCARE["dimensions"]))
            rows["location"].append(np.full(3, _DONTCARE["location"]))
            rows["rotation_y"].append(_DONTCARE["ry"])
            continue
        fraction = occluded_fraction(scene, int(k), camera_centre, rng)
        rows["name"].append(scene.names[k])
        rows["truncated"].append(float(np.clip(1.0 - area_clipped[k] / area_full[k], 0.0, 1.0)))
        rows["occluded"].append(int(np.searchsorted(_OCCLUSION_LEVELS, fraction, side="right")))
        rows["alpha"].append(alpha[k])
        rows["bbox"].append(clipped[k])
        rows["dimensions"].append(dimensions[k])
        rows["location"].append(location[k])
        rows["rotation_y"].append(rotation_y[k])
    # DontCare lines come last in KITTI files.
    order = sorted(range(len(rows["name"])), key=lambda i: rows["name"][i] == "DontCare")
    shapes = {"bbox": (-1, 4), "dimensions": (-1, 3), "location": (-1, 3)}
    label = {
        key: np.array([values[i] for i in order], dtype="<U16" if key == "name" else None).reshape(
            shapes.get(key, (-1,))
        )
        for key, values in rows.items()
    }
    label["occluded"] = label["occluded"].astype(np.int64)
    for key in ("truncated", "alpha", "bbox", "dimensions", "location", "rotation_y"):
        label[key] = label[key].astype(np.float64)
    image = _render_image(scene, calib, image_size, rng)
    return scan.points, label, image, scene, scan.source


def write_kitti_object(
    root: str | os.PathLike[str],
    *,
    num_train: int = 16,
    num_test: int = 4,
    val_fraction: float = 0.5,
    num_rings: int = 64,
    azimuth_steps: int = 1024,
    image_size: tuple[int, int] = KITTI_IMAGE_SIZE,
    dontcare_distance: float = 45.0,
    dontcare_probability: float = 0.5,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Generate and write a synthetic KITTI 3D object tree (layout and label rules in the module docstring).

    Args:
        root: Destination folder; must be empty or absent (see ``overwrite``).
        num_train: Frames under ``training/`` (split into ImageSets train and val).
        num_test: Frames under ``testing/`` (listed in ImageSets test), without labels.
        val_fraction: Share of the training frames listed in ``ImageSets/val.txt`` (at least one each).
        num_rings: LiDAR elevation rings (64 as the HDL-64E).
        azimuth_steps: Rays per ring over 360 degrees; the points per frame are roughly
            ``0.9 * num_rings * azimuth_steps`` (the upward rings see mostly sky). The real scanner: ~2000.
        image_size: ``(height, width)`` of image 2; the camera intrinsics are scaled to it.
        dontcare_distance: Objects beyond this distance (metres) may become DontCare regions.
        dontcare_probability: Probability that such a far object does.
        seed: Seed of the whole tree; frame ``i`` depends only on ``(seed, part, i)``.
        overwrite: Replace a synthetic tree already in ``root`` (never a folder without our README).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: Non-positive counts or sizes, ``val_fraction`` outside (0, 1), fewer than 2 training frames,
            or a negative seed.
        FileExistsError: ``root`` is not empty (see :func:`~.output_tree.prepare_output_root`).
    """
    for name, value in (("num_train", num_train), ("num_rings", num_rings), ("azimuth_steps", azimuth_steps)):
        positive_int(name, value)
    if isinstance(num_test, bool) or not isinstance(num_test, int) or num_test < 0:
        raise ValueError(f"`num_test` must be a non-negative integer, got {num_test!r}")
    if num_train < 2:
        raise ValueError(f"`num_train` must be at least 2 (one train and one val frame), got {num_train}")
    if max(num_train, num_test) > 999999:
        raise ValueError("KITTI names frames with 6 digits; at most 999999 frames per part")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction!r}")
    image_size = (positive_int("image_size[0]", image_size[0]), positive_int("image_size[1]", image_size[1]))
    if not 0.0 <= dontcare_probability <= 1.0:
        raise ValueError(f"`dontcare_probability` must be in [0, 1], got {dontcare_probability!r}")
    seed = validate_seed(seed)
    sensor = LidarSensor(num_rings=int(num_rings), azimuth_steps=int(azimuth_steps))
    calib = kitti_calibration(image_size)
    out = prepare_output_root(root, overwrite=overwrite)

    for part, count in (("training", int(num_train)), ("testing", int(num_test))):
        for index in range(count):
            frame_id = f"{index:06d}"
            rng = item_rng(seed, f"kitti_object/{part}/{frame_id}")
            points, label, image, _, _ = make_kitti_object_frame(
                rng,
                calib,
                sensor=sensor,
                image_size=image_size,
                dontcare_distance=dontcare_distance,
                dontcare_probability=dontcare_probability,
            )
            write_velodyne(out / part / "velodyne" / f"{frame_id}.bin", points)
            write_calib(out / part / "calib" / f"{frame_id}.txt", calib)
            (out / part / "image_2").mkdir(parents=True, exist_ok=True)
            image.save(out / part / "image_2" / f"{frame_id}.png", compress_level=1)
            if part == "training":
                write_label(out / part / "label_2" / f"{frame_id}.txt", label)

    order = np.random.default_rng([seed, 7]).permutation(int(num_train))
    num_val = min(max(1, round(num_train * val_fraction)), num_train - 1)
    val = sorted(int(i) for i in order[:num_val])
    train = sorted(int(i) for i in order[num_val:])
    write_image_set(out / "ImageSets" / "train.txt", [f"{i:06d}" for i in train])
    write_image_set(out / "ImageSets" / "val.txt", [f"{i:06d}" for i in val])
    write_image_set(out / "ImageSets" / "test.txt", [f"{i:06d}" for i in range(int(num_test))])

    write_synthetic_readme(
        out,
        generator="lightning_hpml.datamodules.synthetic.kitti_object_writer.write_kitti_object",
        description="KITTI 3D object detection benchmark (training/ with label_2, testing/, ImageSets)",
        parameters={
            "num_train": int(num_train),
            "num_test": int(num_test),
            "val_fraction": val_fraction,
            "num_rings": int(num_rings),
            "azimuth_steps": int(azimuth_steps),
            "image_size": list(image_size),
            "dontcare_distance": dontcare_distance,
            "dontcare_probability": dontcare_probability,
            "seed": seed,
            "sensor": {
                "height": sensor.height,
                "elevation_deg": list(sensor.elevation_deg),
                "max_range": sensor.max_range,
                "range_noise": sensor.range_noise,
            },
        },
        content=(
            "Content: procedural street scenes (road plane, cars, pedestrians, cyclists as boxes, poles and\n"
            "building walls) scanned by an exact ray-cast 64-ring LiDAR; labels are computed from the geometry."
        ),
    )
    return out
