"""Pinhole renders of a textured tabletop scene from cameras at arbitrary poses, with exact z-depth.

The multi-view counterpart of :mod:`.stereo_scene`: the same textured parallelograms (:class:`~.scene_geometry.Patch`)
are intersected with every pixel-centre ray of a camera given by world-to-camera extrinsics and pixel intrinsics
(``x`` right, ``y`` down, ``z`` forward). The depth stored is the camera-frame ``z`` of the surface hit, as in DTU's
depth maps. The scene: a textured back wall and floor, and a few textured boxes in front of the wall, all inside the
field of view of cameras placed on an arc around the scene centre (:func:`arc_cameras`).
"""

from __future__ import annotations

import numpy as np

from lightning_hpml.datamodules.synthetic.procedural_texture import make_texture
from lightning_hpml.datamodules.synthetic.scene_geometry import Patch, StereoScene

__all__ = ["arc_cameras", "render_view", "tabletop_scene"]

SCENE_CENTRE = np.array([0.0, 0.3, 5.0])


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)  # y down: right = down x forward
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = np.stack([right, down, forward])
    extrinsic[:3, 3] = -extrinsic[:3, :3] @ centre
    return extrinsic


def arc_cameras(
    num_views: int, spread_deg: float = 40.0, radius: float = 5.0, height_swing: float = 0.0
) -> list[np.ndarray]:
    """World-to-camera extrinsics of ``num_views`` cameras on an arc looking at the scene centre.

    ``height_swing`` moves the cameras up and down along the arc (one sine period, as a hand-held capture), so the
    camera centres do not lie on one line."""
    fractions = np.linspace(0.0, 1.0, num_views)
    angles = np.radians((fractions - 0.5) * spread_deg)
    cameras = []
    for fraction, angle in zip(fractions, angles):
        offset = radius * np.array([np.sin(angle), -0.12, -np.cos(angle)])
        offset[1] -= height_swing * np.sin(2 * np.pi * fraction)
        cameras.append(_look_at(SCENE_CENTRE + offset, SCENE_CENTRE))
    return cameras


def _quad(origin, edge_u, edge_v, texture: int, object_id: int = 0) -> Patch:
    return Patch(np.asarray(origin, float), np.asarray(edge_u, float), np.asarray(edge_v, float), texture, object_id)


def tabletop_scene(rng: np.random.Generator, boxes: int = 3) -> StereoScene:
    """A back wall (z = 8), a floor (y = 1.2) and ``boxes`` random boxes standing on the floor."""
    textures = [make_texture(rng, 256, 256), make_texture(rng, 256, 256)]
    patches = [
        _quad([-12, -8, 8.0], [24, 0, 0], [0, 9.2, 0], texture=0),  # wall
        _quad([-12, 1.2, -2.0], [24, 0, 0], [0, 0, 10.0], texture=1),  # floor
    ]
    for k in range(boxes):
        size = rng.uniform([0.5, 0.5, 0.5], [1.2, 1.6, 1.2])
        centre = SCENE_CENTRE + np.array([rng.uniform(-1.4, 1.4), 0.0, rng.uniform(-0.8, 1.5)])
        low = np.array([centre[0] - size[0] / 2, 1.2 - size[1], centre[2] - size[2] / 2])
        textures.append(make_texture(rng, 128, 128))
        t = len(textures) - 1
        sx, sy, sz = np.diag(size)
        corner_far = low + size * np.array([1, 1, 1])
        patches += [
            _quad(low, sx, sy, t, k + 1),
            _quad(low + sz, sx, sy, t, k + 1),  # front/back
            _quad(low, sz, sy, t, k + 1),
            _quad(low + sx, sz, sy, t, k + 1),  # left/right
            _quad(low, sx, sz, t, k + 1),
            _quad(corner_far - sx - sz, sx, sz, t, k + 1),  # top/bottom
        ]
    return StereoScene(patches=patches, textures=textures)


def render_view(
    scene: StereoScene, extrinsic: np.ndarray, intrinsic: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb uint8 (H, W, 3), z-depth float32 (H, W))`` of ``scene`` seen by one camera; every ray must hit."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pixels = np.stack([u, v, np.ones_like(u)], -1)
    rays_cam = pixels @ np.linalg.inv(intrinsic).T  # z = 1
    rotation, translation = extrinsic[:3, :3], extrinsic[:3, 3]
    centre = -rotation.T @ translation
    rays = rays_cam @ rotation  # world directions (R^T applied to row vectors)
    best = np.full((height, width), np.inf)
    colour = np.zeros((height, width, 3), np.float32)
    for patch in scene.patches:
        normal = np.cross(patch.edge_u, patch.edge_v)
        denom = rays @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((patch.origin - centre) @ normal) / denom
        hit_points = centre + rays * t[..., None]
        rel = hit_points - patch.origin
        uu, vv = patch.edge_u @ patch.edge_u, patch.edge_v @ patch.edge_v
        uv = patch.edge_u @ patch.edge_v
        a, b = rel @ patch.edge_u, rel @ patch.edge_v
        det = uu * vv - uv * uv
        s, q = (a * vv - b * uv) / det, (b * uu - a * uv) / det
        hit = (t > 1e-6) & (t < best) & (s >= 0) & (s <= 1) & (q >= 0) & (q <= 1)
        if not hit.any():
            continue
        best = np.where(hit, t, best)
        texture = scene.textures[patch.texture]
        th, tw = texture.shape[:2]
        ix = np.clip((s[hit] * (tw - 1)).round().astype(int), 0, tw - 1)
        iy = np.clip((q[hit] * (th - 1)).round().astype(int), 0, th - 1)
        shade = 0.6 + 0.4 * np.abs(
            (rays[hit] / np.linalg.norm(rays[hit], axis=1, keepdims=True)) @ (normal / np.linalg.norm(normal))
        )
        colour[hit] = texture[iy, ix] * shade[:, None]
    if not np.isfinite(best).all():
        raise RuntimeError(f"{int((~np.isfinite(best)).sum())} rays hit no surface; the wall must cover the view")
    depth = best  # rays have camera-frame z = 1, so the ray parameter is the z-depth
    return (np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8), depth.astype(np.float32)
