"""Point-cloud augmentation and processing of the KITTI-trained point-based detectors (OpenPCDet recipe).

The steps and their order follow OpenPCDet's KITTI pipeline as used by IA-SSD and RIDE (``DATA_AUGMENTOR``:
``gt_sampling`` -> ``random_world_flip`` along x -> ``random_world_rotation`` -> ``random_world_scaling``; then
``mask_points_and_boxes_outside_range`` and ``sample_points``); reimplemented from those facts, no code copied.
Every random step takes an explicit ``numpy.random.Generator`` so that a sample's augmentation is a function of
``(seed, epoch, index)`` only, and a resumed run repeats an uninterrupted one exactly.

Boxes are LiDAR boxes ``(M, 7)`` x, y, z_centre, l, w, h, yaw; points are ``(N, C)`` with x, y, z first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lightning_hpml.datamodules.formats.kitti_object import (
    bev_boxes_overlap,
    boxes_to_corners,
    points_in_boxes,
    wrap_angle,
)

__all__ = [
    "GTDatabase",
    "boxes_in_range",
    "global_scaling",
    "gt_sampling",
    "points_in_range",
    "random_flip_x",
    "rotate_about_z",
    "sample_points",
]


@dataclass
class GTDatabase:
    """Ground-truth objects cut out of the training scans: each box with the points inside it.

    Attributes:
        names: ``(K,)`` class names.
        boxes: ``(K, 7)`` boxes, where the objects were (they are pasted back at the same place, as in OpenPCDet).
        points: ``(P, C)`` the objects' points, concatenated; object k owns ``points[offsets[k]:offsets[k+1]]``.
        offsets: ``(K + 1,)``.
        sources: ``K`` strings naming the frame each object came from (for error messages and inspection).
    """

    names: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    offsets: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def object_points(self, k: int) -> np.ndarray:
        """Points of object ``k``."""
        return self.points[self.offsets[k] : self.offsets[k + 1]]

    def count(self, name: str) -> int:
        """Objects of class ``name``."""
        return int((self.names == name).sum())

    @classmethod
    def build(
        cls,
        frames: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
        classes: Iterable[str],
        min_points: int = 5,
    ) -> GTDatabase:
        """Collect the objects of ``classes`` with at least ``min_points`` points from ``frames``.

        Args:
            frames: ``(frame_id, points (N, C), boxes (M, 7), names (M,))`` per training frame (whole scans, as
                OpenPCDet's database uses the full scan, not the camera view).
            classes: Classes to collect.
            min_points: Objects with fewer points are left out (OpenPCDet ``filter_by_min_points``: 5).
        """
        wanted = set(classes)
        names, boxes, chunks, sources = [], [], [], []
        channels = None
        for frame_id, points, frame_boxes, frame_names in frames:
            keep = np.array([n in wanted for n in frame_names], dtype=bool)
            if not keep.any():
                continue
            channels = points.shape[1]
            inside = points_in_boxes(points, frame_boxes[keep])
            for m, (box, name) in enumerate(zip(frame_boxes[keep], np.asarray(frame_names)[keep])):
                mask = inside[:, m]
                if mask.sum() >= min_points:
                    names.append(str(name))
                    boxes.append(box)
                    chunks.append(points[mask])
                    sources.append(f"{frame_id}#{m}")
        counts = np.array([len(c) for c in chunks], dtype=np.int64)
        return cls(
            names=np.array(names, dtype="<U16"),
            boxes=np.array(boxes, dtype=np.float64).reshape(-1, 7),
            points=np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, channels or 4), np.float32),
            offsets=np.concatenate([[0], np.cumsum(counts)]),
            sources=sources,
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Store as ``.npz`` (no pickled objects)."""
        np.savez(
            path,
            names=self.names,
            boxes=self.boxes,
            points=self.points,
            offsets=self.offsets,
            sources=np.array(self.sources, dtype=str),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GTDatabase:
        """Read a database written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                names=data["names"],
                boxes=data["boxes"],
                points=data["points"],
                offsets=data["offsets"],
                sources=[str(s) for s in data["sources"]],
            )


def gt_sampling(
    points: np.ndarray,
    boxes: np.ndarray,
    names: np.ndarray,
    database: GTDatabase,
    targets: dict[str, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste database objects into a scan until each class reaches its target count, without collisions.

    For each class, ``targets[class] - (objects of that class already in the frame)`` candidates are drawn without
    replacement; a candidate is kept only if its bird's-eye rectangle overlaps neither a box of the frame (every
    labelled box, any class) nor a candidate kept before it. The scan's points inside the kept boxes are removed
    (they would be inside a solid object) and the objects' points are added.

    Returns:
        ``points``, ``boxes`` and ``names`` with the pasted objects appended.
    """
    occupied = [np.asarray(boxes, dtype=np.float64).reshape(-1, 7)]
    chosen: list[int] = []
    for name, target in targets.items():
        want = int(target) - int((np.asarray(names) == name).sum())
        pool = np.flatnonzero(database.names == name)
        if want <= 0 or len(pool) == 0:
            continue
        for k in rng.choice(pool, size=min(want, len(pool)), replace=False):
            candidate = database.boxes[k][None]
            if not bev_boxes_overlap(candidate, np.concatenate(occupied)).any():
                occupied.append(candidate)
                chosen.append(int(k))
    if not chosen:
        return points, boxes, names
    new_boxes = database.boxes[chosen]
    keep = ~points_in_boxes(points, new_boxes).any(axis=1)
    pasted = [database.object_points(k).astype(points.dtype, copy=False) for k in chosen]
    points = np.concatenate([points[keep], *pasted])
    boxes = np.concatenate([boxes.reshape(-1, 7), new_boxes])
    names = np.concatenate([np.asarray(names, dtype="<U16"), database.names[chosen]])
    return points, boxes, names


def random_flip_x(
    points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, bool]:
    """With probability 1/2 mirror the scene about the x axis (y -> -y, yaw -> -yaw); returns the flag too."""
    if rng.random() >= 0.5:
        return points, boxes, False
    points, boxes = points.copy(), boxes.copy()
    points[:, 1] = -points[:, 1]
    boxes[:, 1] = -boxes[:, 1]
    boxes[:, 6] = wrap_angle(-boxes[:, 6])
    return points, boxes, True


def rotate_about_z(points: np.ndarray, boxes: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate points and boxes about the LiDAR z axis through the origin by ``angle`` (counter-clockwise)."""
    cos, sin = math.cos(angle), math.sin(angle)
    points, boxes = points.copy(), np.asarray(boxes, dtype=np.float64).reshape(-1, 7).copy()
    for array in (points, boxes):
        x, y = array[:, 0].copy(), array[:, 1].copy()
        array[:, 0] = cos * x - sin * y
        array[:, 1] = sin * x + cos * y
    boxes[:, 6] = wrap_angle(boxes[:, 6] + angle)
    return points, boxes


def global_scaling(points: np.ndarray, boxes: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale coordinates and box centres/sizes by ``scale`` (reflectance untouched)."""
    points, boxes = points.copy(), boxes.copy()
    points[:, :3] *= scale
    boxes[:, :6] *= scale
    return points, boxes


def points_in_range(points: np.ndarray, point_cloud_range: np.ndarray) -> np.ndarray:
    """Mask of points inside the range's x-y extent (OpenPCDet ``mask_points_by_range`` ignores z)."""
    r = point_cloud_range
    return (points[:, 0] >= r[0]) & (points[:, 0] <= r[3]) & (points[:, 1] >= r[1]) & (points[:, 1] <= r[4])


def boxes_in_range(boxes: np.ndarray, point_cloud_range: np.ndarray, min_corners: int = 1) -> np.ndarray:
    """Mask of boxes with at least ``min_corners`` bird's-eye corners inside the range's x-y extent (OpenPCDet)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    corners = boxes_to_corners(boxes)[:, :4, :2]
    r = point_cloud_range
    inside = (corners >= r[None, None, 0:2]) & (corners <= r[None, None, 3:5])
    return inside.all(axis=2).sum(axis=1) >= min_corners


def sample_points(
    points: np.ndarray, num_points: int, rng: np.random.Generator, near_distance: float = 40.0
) -> np.ndarray:
    """Return exactly ``num_points`` points, the way IA-SSD's ``sample_points`` does.

    More points than wanted: all far points (distance >= ``near_distance``; they are sparse and precious) are
    kept and the near ones are subsampled without replacement; if the far points alone are too many, all points
    are subsampled uniformly. Fewer: every point is kept and random points are repeated to fill up (with
    replacement only when more than doubling is needed). The result is shuffled.
    """
    n = len(points)
    if n == 0:
        raise ValueError(f"cannot sample {num_points} points from an empty point cloud")
    if n >= num_points:
        distance = np.linalg.norm(points[:, :3], axis=1)
        far = np.flatnonzero(distance >= near_distance)
        near = np.flatnonzero(distance < near_distance)
        if len(far) < num_points:
            choice = np.concatenate([far, rng.choice(near, num_points - len(far), replace=False)])
        else:
            choice = rng.choice(n, num_points, replace=False)
    else:
        extra = rng.choice(n, num_points - n, replace=num_points - n > n)
        choice = np.concatenate([np.arange(n), extra])
    return points[rng.permutation(choice)]
