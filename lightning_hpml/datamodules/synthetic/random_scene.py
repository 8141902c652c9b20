"""Random scenes for the synthetic stereo pairs: a slanted background plane and 3..8 rectangles and boxes.

The scene is built for one rig and one disparity range ``[min_disparity, max_disparity]``: the background covers both
views entirely, and every surface point of every object lies within the range, so the rendered disparity maps do
too. Foreground objects are slanted two-sided rectangles and axis-aligned boxes (their faces visible from at least
one camera); they overlap and occlude each other and the background, producing disparity discontinuities and
occlusions. Each surface gets its own :func:`~.procedural_texture.make_texture`, sized so that a texel covers about
one pixel, so the images carry texture at the scale the matching network sees.
"""

from __future__ import annotations

import math

import numpy as np

from lightning_hpml.datamodules.synthetic.procedural_texture import make_texture
from lightning_hpml.datamodules.synthetic.scene_geometry import Patch, StereoRig, StereoScene

__all__ = ["default_max_disparity", "default_min_disparity", "random_scene"]

_MAX_TEXTURE_SIDE = 2048
"""Texture side limit in texels (a very large or very close surface is textured more coarsely instead)."""


def _texture_for(rng: np.random.Generator, patch_size: tuple[float, float], texels_per_unit: float) -> np.ndarray:
    """A texture whose texels are ``1 / texels_per_unit`` scene units wide on a patch of ``(len_u, len_v)``."""
    tw = int(min(_MAX_TEXTURE_SIDE, max(4, math.ceil(patch_size[0] * texels_per_unit))))
    th = int(min(_MAX_TEXTURE_SIDE, max(4, math.ceil(patch_size[1] * texels_per_unit))))
    return make_texture(rng, th, tw)


def _texel_density(rig: StereoRig, disparities: np.ndarray) -> float:
    """Texels per scene unit so that a texel is about one pixel at a depth biased towards the far end.

    At disparity ``d`` one scene unit spans ``d / B`` pixels. Matching the texels to the far end avoids aliasing but
    blurs the near end; the 0.7/0.3 geometric blend keeps minification below ~2x (handled by the supersampling)
    while near parts stay sharp enough to match.
    """
    d_far, d_near = float(disparities.min()), float(disparities.max())
    return d_far**0.7 * d_near**0.3 / rig.baseline


def _ray_plane_depth(rig: StereoRig, cam_x: float, u: np.ndarray, v: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Points where rays through ``(u, v)`` from ``(cam_x, 0, 0)`` meet the plane ``normal . X = 1``, ``(N, 3)``."""
    directions = np.stack([(u - rig.cx) / rig.focal, (v - rig.cy) / rig.focal, np.ones_like(u)], axis=1)
    origin = np.array([cam_x, 0.0, 0.0])
    depth = (1.0 - normal @ origin) / (directions @ normal)
    return origin + depth[:, None] * directions


def _background(
    rig: StereoRig, rng: np.random.Generator, d_min: float, d_max: float, textures: list[np.ndarray]
) -> tuple[Patch, float]:
    """A slanted plane covering both views with disparities in ``[d_min, ...]``; returns it and its largest disparity.

    The plane is built in disparity space: in the left view a plane's disparity is affine,
    ``d(u, v) = d_c + g_u (u - cx) + g_v (v - cy)``, i.e. ``1 / Z = n . (x, y, 1)`` with ``n = (g_u, g_v, d_c / f) / B``.
    The right view sees the plane at left-view columns up to ``W - 1 + d``, so the bounds are taken over that wider
    range.
    """
    span = d_max - d_min
    spread = rng.uniform(0.05, 0.25) * span  # disparity variation across the view
    angle = rng.uniform(-0.35 * math.pi, 1.35 * math.pi)  # disparity grows downwards (a floor) more often than up
    g_u = spread * math.cos(angle) / (rig.width + d_max)
    g_v = spread * math.sin(angle) / rig.height
    us = np.array([-2.0, rig.width + 1.0 + d_max])
    vs = np.array([-2.0, rig.height + 1.0])
    offsets = g_u * (us[:, None] - rig.cx) + g_v * (vs[None, :] - rig.cy)
    lowest = d_min + rng.uniform(0.0, 0.12) * span
    d_c = lowest - offsets.min()
    highest = d_c + offsets.max()
    normal = np.array([g_u, g_v, d_c / rig.focal]) / rig.baseline

    # Footprint of both views on the plane (corner rays, slightly outside the images).
    cu = np.array([-2.0, rig.width + 1.0, rig.width + 1.0, -2.0])
    cv = np.array([-2.0, -2.0, rig.height + 1.0, rig.height + 1.0])
    points = np.concatenate(
        [_ray_plane_depth(rig, 0.0, cu, cv, normal), _ray_plane_depth(rig, rig.baseline, cu, cv, normal)]
    )
    if np.any(points[:, 2] <= 0):
        raise RuntimeError(f"background plane {normal} is not in front of both cameras (bug)")
    unit_n = normal / np.linalg.norm(normal)
    e1 = np.array([1.0, 0.0, 0.0]) - unit_n[0] * unit_n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(unit_n, e1)
    local = (points - points[0]) @ np.stack([e1, e2], axis=1)
    lo, hi = local.min(axis=0), local.max(axis=0)
    margin = 0.02 * (hi - lo)
    lo, hi = lo - margin, hi + margin
    patch = Patch(
        origin=points[0] + lo[0] * e1 + lo[1] * e2,
        edge_u=(hi[0] - lo[0]) * e1,
        edge_v=(hi[1] - lo[1]) * e2,
        texture=len(textures),
        object_id=0,
    )
    density = _texel_density(rig, np.array([lowest, highest]))
    textures.append(_texture_for(rng, (hi[0] - lo[0], hi[1] - lo[1]), density))
    return patch, float(highest)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about a unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _object_centre(rig: StereoRig, rng: np.random.Generator, d_lo: float, d_max: float) -> tuple[np.ndarray, float]:
    """A random 3-D point projecting into the left image, with disparity in ``[d_lo, d_max]``."""
    d = rng.uniform(d_lo, d_max)
    z = rig.depth(d)
    u = rng.uniform(-0.05, 1.05) * (rig.width - 1)
    v = rng.uniform(-0.05, 1.05) * (rig.height - 1)
    return np.array([(u - rig.cx) / rig.focal * z, (v - rig.cy) / rig.focal * z, z]), float(d)


def _half_sizes(rig: StereoRig, rng: np.random.Generator, z: float) -> tuple[float, float]:
    """Random half width/height (scene units) of an object at depth ``z``: 5..20 % of the image width in pixels."""
    half_u_px = rng.uniform(0.05, 0.2) * rig.width
    half_v_px = min(half_u_px * math.exp(rng.uniform(-0.8, 0.8)), 0.45 * rig.height + 0.2 * half_u_px)
    return half_u_px * z / rig.focal, half_v_px * z / rig.focal


def _slanted_rectangle(
    rig: StereoRig,
    rng: np.random.Generator,
    d_lo: float,
    d_min: float,
    d_max: float,
    object_id: int,
    textures: list[np.ndarray],
) -> list[Patch]:
    """A two-sided rectangle tilted up to 55 degrees, all corners within ``[d_min, d_max]`` disparity.

    A plane's disparity is affine over its image, so the corners bound it. A rectangle that comes too close is
    scaled about the left camera centre (same left-view outline, larger depth); one that then spans too wide a
    range is redrawn with less tilt, and after a few attempts a fronto-parallel one is used.
    """
    for attempt in range(8):
        centre, _ = _object_centre(rig, rng, d_lo, d_max)
        a, b = _half_sizes(rig, rng, centre[2])
        tilt = rng.uniform(0.0, math.radians(55.0)) * (0.5 ** max(0, attempt - 3))
        if attempt == 7:
            tilt = 0.0
        axis_angle = rng.uniform(0.0, 2 * math.pi)
        axis = np.array([math.cos(axis_angle), math.sin(axis_angle), 0.0])
        rotation = _rotation(axis, tilt) @ _rotation(np.array([0.0, 0.0, 1.0]), rng.uniform(0, 2 * math.pi))
        du, dv = rotation[:, 0] * a, rotation[:, 1] * b
        corners = np.stack([centre - du - dv, centre + du - dv, centre + du + dv, centre - du + dv])
        if np.any(corners[:, 2] <= 0):
            continue
        d = rig.disparity(corners[:, 2])
        scale = max(1.0, float(d.max()) / d_max)
        d = d / scale
        if d.min() < d_min and attempt < 7:
            continue
        patch = Patch(
            origin=(centre - du - dv) * scale,
            edge_u=2 * du * scale,
            edge_v=2 * dv * scale,
            texture=len(textures),
            object_id=object_id,
        )
        textures.append(_texture_for(rng, (2 * a * scale, 2 * b * scale), _texel_density(rig, d)))
        return [patch]
    raise RuntimeError("could not place a fronto-parallel rectangle (bug)")


def _box(
    rig: StereoRig,
    rng: np.random.Generator,
    d_lo: float,
    d_min: float,
    d_max: float,
    object_id: int,
    textures: list[np.ndarray],
) -> list[Patch]:
    """An axis-aligned box: front face at the sampled depth, faces visible from a camera as one-sided patches."""
    centre, _ = _object_centre(rig, rng, d_lo, d_max)
    a, b = _half_sizes(rig, rng, centre[2])
    z0 = centre[2]
    length = rng.uniform(0.3, 1.5) * 2 * max(a, b)
    length = min(length, rig.depth(d_min) - z0)  # the back stays within the disparity range
    x0, x1 = centre[0] - a, centre[0] + a
    y0, y1 = centre[1] - b, centre[1] + b
    z1 = z0 + length
    ex, ey, ez = np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y1 - y0, 0.0]), np.array([0.0, 0.0, length])
    faces = [  # (origin, edge_u, edge_v, outward)
        (np.array([x0, y0, z0]), ex, ey, np.array([0.0, 0.0, -1.0])),  # front
        (np.array([x0, y0, z0]), ez, ey, np.array([-1.0, 0.0, 0.0])),  # left side
        (np.array([x1, y0, z0]), ez, ey, np.array([1.0, 0.0, 0.0])),  # right side
        (np.array([x0, y0, z0]), ex, ez, np.array([0.0, -1.0, 0.0])),  # top
        (np.array([x0, y1, z0]), ex, ez, np.array([0.0, 1.0, 0.0])),  # bottom
    ]
    cameras = (np.zeros(3), np.array([rig.baseline, 0.0, 0.0]))
    density = _texel_density(rig, rig.disparity(np.array([z0, z1])))
    patches = []
    for origin, edge_u, edge_v, outward in faces:
        if not any(float(np.dot(outward, c - origin)) > 0 for c in cameras):
            continue  # never visible from either camera
        patches.append(
            Patch(
                origin=origin, edge_u=edge_u, edge_v=edge_v, texture=len(textures), object_id=object_id, outward=outward
            )
        )
        textures.append(_texture_for(rng, (float(np.linalg.norm(edge_u)), float(np.linalg.norm(edge_v))), density))
    return patches


def random_scene(
    rig: StereoRig,
    rng: np.random.Generator,
    *,
    min_disparity: float,
    max_disparity: float,
    num_objects: int | None = None,
) -> StereoScene:
    """A slanted textured background plus 3..8 random rectangles and boxes, disparities within the given range.

    Args:
        rig: The stereo rig the scene is built for (the background covers exactly its two views).
        rng: Source of randomness; the scene is a deterministic function of its state.
        min_disparity: Smallest disparity of any surface point (the far end of the background).
        max_disparity: Largest disparity of any surface point.
        num_objects: Number of foreground objects; ``None`` draws 3..8.

    Raises:
        ValueError: The disparity range is empty or not positive, or ``num_objects`` is negative.
    """
    if not (0.0 < min_disparity < max_disparity and math.isfinite(max_disparity)):
        raise ValueError(
            f"need 0 < min_disparity < max_disparity, got min_disparity={min_disparity!r}, "
            f"max_disparity={max_disparity!r}"
        )
    if num_objects is None:
        num_objects = int(rng.integers(3, 9))
    elif not isinstance(num_objects, (int, np.integer)) or num_objects < 0:
        raise ValueError(f"`num_objects` must be a non-negative integer or None, got {num_objects!r}")
    textures: list[np.ndarray] = []
    background, background_max = _background(rig, rng, min_disparity, max_disparity, textures)
    patches = [background]
    # Objects start just in front of the background's nearest part, so that few of them end up behind it.
    d_lo = min(background_max + 0.03 * (max_disparity - min_disparity), max_disparity)
    for object_id in range(1, int(num_objects) + 1):
        make = _box if rng.random() < 0.5 else _slanted_rectangle
        patches += make(rig, rng, d_lo, min_disparity, max_disparity, object_id, textures)
    return StereoScene(patches=patches, textures=textures)


def default_min_disparity(max_disparity: float) -> float:
    """Smallest disparity used when none is given: ``max(0.5, max_disparity / 20)`` (e.g. 2 px for 40 px)."""
    return max(0.5, float(max_disparity) / 20.0)


def default_max_disparity(width: int) -> float:
    """Largest disparity used when none is given: ``5 / 32`` of the width (40 px at 256, 150 px at 960).

    A fixed fraction keeps the task the same at every image size; at 960 px it stays below the 192 px that
    FADNet-style networks cover.
    """
    return width * 5.0 / 32.0
