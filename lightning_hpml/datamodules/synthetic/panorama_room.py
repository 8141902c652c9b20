"""Equirectangular RGB-D of a textured box room with boxes inside, ray cast from known geometry (exact depth).

The camera sits inside an axis-aligned room (x right, y down, z forward; floor at ``y = +floor``); a few boxes stand
on the floor. Every pixel-centre ray (:func:`~lightning_hpml.modules.layers.icosphere.equirect_directions`) is
intersected with the room's walls and the boxes' slabs; the depth stored is the distance along the ray (range), as
in Stanford2D3D, Matterport3D and 3D60. Each surface is coloured by a procedural texture in its own plane
coordinates, with mild Lambertian shading, so depth has visible cues a network can learn from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lightning_hpml.datamodules.synthetic.procedural_texture import make_texture
from lightning_hpml.modules.layers.icosphere import equirect_directions

__all__ = ["PanoramaRoom", "random_room", "render_panorama"]

_TEXELS_PER_METRE = 48.0
_TEXTURE_SIZE = 128


@dataclass
class PanoramaRoom:
    """Room half-extents ``(x, z)``, ceiling height above and floor depth below the camera, and boxes
    ``(N, 2, 3)`` as (min corner, max corner)."""

    half_x: float
    half_z: float
    ceiling: float
    floor: float
    boxes: np.ndarray
    textures: list[np.ndarray]  # one per object: the room, then each box


def random_room(rng: np.random.Generator, max_boxes: int = 4) -> PanoramaRoom:
    half_x, half_z = rng.uniform(1.8, 4.5, size=2)
    ceiling, floor = rng.uniform(0.9, 1.6), rng.uniform(1.2, 1.7)
    boxes = []
    for _ in range(int(rng.integers(1, max_boxes + 1))):
        size = rng.uniform([0.3, 0.3, 0.3], [1.0, min(1.4, floor + ceiling - 0.2), 1.0])
        for _attempt in range(20):
            centre = rng.uniform(
                [-half_x + size[0] / 2, 0, -half_z + size[2] / 2], [half_x - size[0] / 2, 0, half_z - size[2] / 2]
            )
            low = np.array([centre[0] - size[0] / 2, floor - size[1], centre[2] - size[2] / 2])
            high = np.array([centre[0] + size[0] / 2, floor, centre[2] + size[2] / 2])
            if not (np.all(low[[0, 2]] < 0.25) and np.all(high[[0, 2]] > -0.25)):  # keep clear of the camera
                boxes.append(np.stack([low, high]))
                break
    textures = [make_texture(rng, _TEXTURE_SIZE, _TEXTURE_SIZE) for _ in range(len(boxes) + 1)]
    return PanoramaRoom(half_x, half_z, ceiling, floor, np.array(boxes).reshape(-1, 2, 3), textures)


def render_panorama(room: PanoramaRoom, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(rgb uint8 (H, W, 3), range in metres float32 (H, W))``; every pixel hits a surface."""
    rays = equirect_directions(height, width).numpy()
    low = np.array([-room.half_x, -room.ceiling, -room.half_z])
    high = np.array([room.half_x, room.floor, room.half_z])
    with np.errstate(divide="ignore", invalid="ignore"):
        exits = np.where(rays > 0, high / rays, np.where(rays < 0, low / rays, np.inf))
    t = exits.min(-1)
    axis = exits.argmin(-1)
    obj = np.zeros(t.shape, dtype=np.int64)
    for i, (b_low, b_high) in enumerate(room.boxes):
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = b_low / rays, b_high / rays
        near = np.nanmax(np.minimum(t1, t2), axis=-1)
        far = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (near <= far) & (near > 0) & (near < t)
        t = np.where(hit, near, t)
        axis = np.where(hit, np.minimum(t1, t2).argmax(-1), axis)
        obj = np.where(hit, i + 1, obj)
    points = rays * t[..., None]
    rgb = np.zeros((height, width, 3), dtype=np.float32)
    for k, texture in enumerate(room.textures):
        for ax in range(3):
            mask = (obj == k) & (axis == ax)
            if not mask.any():
                continue
            u_axis, v_axis = [a for a in range(3) if a != ax]
            u = np.floor(points[mask][:, u_axis] * _TEXELS_PER_METRE).astype(np.int64) % _TEXTURE_SIZE
            v = np.floor(points[mask][:, v_axis] * _TEXELS_PER_METRE).astype(np.int64) % _TEXTURE_SIZE
            shade = 0.55 + 0.45 * np.abs(rays[mask][:, ax])  # Lambert with a light at the camera
            rgb[mask] = texture[v, u] * shade[:, None]
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), t.astype(np.float32)
