"""Procedural 3-D scenes rendered by a rectified stereo rig, with exact ground-truth disparity.

Why render instead of warping one image: a disparity map obtained by warping is only as good as the warp (holes,
resampling, no real occlusions). Here both views are ray cast independently from the same 3-D geometry, so the
disparity of every pixel is ``f * B / Z`` of the surface its centre ray hits - exact up to floating point - and
occlusions, disparity discontinuities and slanted surfaces arise as they do in real scenes.

Rig (:class:`StereoRig`): pinhole cameras with focal length ``f`` (pixels) and principal point at the image centre
``((W - 1) / 2, (H - 1) / 2)`` (pixel centres at integer coordinates, rows top to bottom, ``y`` pointing down, ``z``
forward). The left camera sits at ``x = 0``, the right one at ``x = B``. A point at depth ``Z`` appears in the right
view ``f * B / Z`` pixels to the left of where it appears in the left view.

Scene (:class:`StereoScene`): parallelogram patches (:class:`Patch`), each with its own texture addressed by the
patch's 2-D coordinates ``(s, t)`` in ``[0, 1]^2``, so a surface point has the same colour in both views. The random
scene (:func:`random_scene`) holds a slanted background plane and 3..8 foreground objects: slanted rectangles and
axis-aligned boxes (their potentially visible faces). Depths are chosen so that all disparities lie within
``[min_disparity, max_disparity]``.

Renderer (:func:`render_scene`): for each view, every ray is intersected with every patch whose projected bounding
box it can fall in, keeping the nearest hit (vectorised over pixels; the only Python loop is over the few dozen
patches). Colours are the average of ``anti_alias ** 2`` sub-pixel rays; disparity comes from the pixel-centre ray.
The occlusion mask of the left view is computed by re-casting, from the right camera, the ray towards each left
pixel's surface point: the point is occluded when something nearer lies on that ray, or when it projects outside
the right image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from lightning_hpml.datamodules.synthetic.procedural_texture import make_texture

__all__ = [
    "Patch",
    "StereoRender",
    "StereoRig",
    "StereoScene",
    "random_scene",
    "render_scene",
    "render_stereo_pair",
]

_MAX_TEXTURE_SIDE = 2048
"""Texture side limit in texels (a very large or very close surface is textured more coarsely instead)."""
_OCCLUSION_RTOL = 1e-6
"""Relative depth margin by which a surface must be nearer than a point to count as occluding it."""


# ---------------------------------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class StereoRig:
    """A rectified pinhole stereo pair (see the module docstring for the conventions)."""

    height: int
    """Image height in pixels."""
    width: int
    """Image width in pixels."""
    focal: float
    """Focal length in pixels (same for both axes and both cameras)."""
    baseline: float = 1.0
    """Distance between the camera centres (scene units); the right camera sits at ``x = baseline``."""

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"StereoRig `{name}` must be an integer >= 2, got {value!r}")
        for name in ("focal", "baseline"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"StereoRig `{name}` must be a positive finite number, got {value!r}")

    @property
    def cx(self) -> float:
        """Principal point column (image centre)."""
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        """Principal point row (image centre)."""
        return (self.height - 1) / 2.0

    def depth(self, disparity: float | np.ndarray) -> float | np.ndarray:
        """Depth ``Z = f * B / d`` of a disparity ``d``."""
        return self.focal * self.baseline / disparity

    def disparity(self, depth: float | np.ndarray) -> float | np.ndarray:
        """Disparity ``d = f * B / Z`` of a depth ``Z``."""
        return self.focal * self.baseline / depth


@dataclass(frozen=True)
class Patch:
    """A textured parallelogram ``origin + s * edge_u + t * edge_v`` for ``s, t`` in ``[0, 1]``.

    ``outward`` makes the patch one-sided (a face of a closed solid): it is skipped for a camera on its inner side,
    which changes nothing in the image (the solid's other faces hide it) but saves work.
    """

    origin: np.ndarray
    """Corner at ``s = t = 0``, shape ``(3,)``."""
    edge_u: np.ndarray
    """Edge along ``s``; texture columns run along it."""
    edge_v: np.ndarray
    """Edge along ``t``; texture rows run along it."""
    texture: int
    """Index into :attr:`StereoScene.textures`."""
    object_id: int = 0
    """0 for the background, ``k >= 1`` for the k-th foreground object."""
    outward: np.ndarray | None = None
    """Outward normal of a one-sided face, or ``None`` for a two-sided surface."""

    def corners(self) -> np.ndarray:
        """The four corners, shape ``(4, 3)``."""
        o, u, v = self.origin, self.edge_u, self.edge_v
        return np.stack([o, o + u, o + u + v, o + v])

    def translated(self, offset: np.ndarray) -> Patch:
        """The same patch moved by ``offset``."""
        return replace(self, origin=self.origin + np.asarray(offset, dtype=np.float64))


@dataclass
class StereoScene:
    """Patches plus the textures they reference."""

    patches: list[Patch]
    """All surfaces; index 0 is conventionally the background."""
    textures: list[np.ndarray] = field(repr=False)
    """float32 ``(h, w, 3)`` textures in ``[0, 1]``."""

    def __post_init__(self) -> None:
        if not self.patches:
            raise ValueError("StereoScene needs at least one patch, got none")
        for k, patch in enumerate(self.patches):
            if not 0 <= patch.texture < len(self.textures):
                raise ValueError(f"StereoScene patch {k} references texture {patch.texture}, but there are "
                                 f"{len(self.textures)} textures")

    @property
    def num_objects(self) -> int:
        """Number of foreground objects (largest ``object_id``)."""
        return max(p.object_id for p in self.patches)

    def with_objects_moved(self, offsets: dict[int, np.ndarray]) -> StereoScene:
        """A copy with object ``k``'s patches translated by ``offsets[k]`` (same textures, e.g. a next frame)."""
        patches = [p.translated(offsets[p.object_id]) if p.object_id in offsets else p for p in self.patches]
        return StereoScene(patches=patches, textures=self.textures)


@dataclass
class StereoRender:
    """One rendered stereo pair with its exact ground truth (all arrays ``H x W``, rows top to bottom)."""

    left: np.ndarray
    """uint8 ``(H, W, 3)`` RGB left image."""
    right: np.ndarray
    """uint8 ``(H, W, 3)`` RGB right image."""
    disparity_left: np.ndarray
    """float32 ``(H, W)``: left pixel ``(x, y)`` shows the point seen at ``(x - d, y)`` in the right view."""
    disparity_right: np.ndarray
    """float32 ``(H, W)``, positive: right pixel ``(x, y)`` shows the point seen at ``(x + d, y)`` in the left view."""
    occlusion_left: np.ndarray
    """bool ``(H, W)``: the left pixel's surface point is not visible in the right image (hidden behind a nearer
    surface, or outside the right image - see :attr:`out_of_frame_left`)."""
    object_mask_left: np.ndarray
    """bool ``(H, W)``: the left pixel shows a foreground object (KITTI ``obj_map``)."""
    out_of_frame_left: np.ndarray
    """bool ``(H, W)``: the left pixel's point projects outside the right image (``x - d < -0.5``); a subset of
    :attr:`occlusion_left`."""
    object_index_left: np.ndarray
    """uint8 ``(H, W)``: 0 for background, ``k`` for the k-th foreground object."""
    focal: float
    """Focal length of the rig in pixels."""
    baseline: float
    """Baseline of the rig (scene units)."""


# ---------------------------------------------------------------------------------------------------- ray casting
@dataclass
class _Hits:
    """Nearest hit per ray: depth (``inf`` if none), patch index (``-1`` if none) and patch coordinates."""

    depth: np.ndarray
    patch: np.ndarray
    s: np.ndarray
    t: np.ndarray


def _dual_basis(edge_u: np.ndarray, edge_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors ``g1, g2`` with ``g_i . e_j = delta_ij`` in the patch plane: ``s = g1 . (p - origin)``."""
    m = np.stack([edge_u, edge_v], axis=1)  # (3, 2)
    pinv = np.linalg.solve(m.T @ m, m.T)  # (2, 3)
    return pinv[0], pinv[1]


def _cast(
    patches: list[Patch],
    rig: StereoRig,
    cam_x: float,
    u: np.ndarray,
    v: np.ndarray,
    dtype: type = np.float64,
) -> _Hits:
    """Cast rays from the camera at ``(cam_x, 0, 0)`` through pixel coordinates ``(u, v)``.

    Args:
        patches: Surfaces to intersect.
        rig: Intrinsics.
        cam_x: Camera centre ``x``.
        u: Either a sorted grid row ``(1, C)`` shared by all rows, or per-ray columns ``(R, C)``.
        v: Sorted row coordinates ``(R, 1)``.
        dtype: Float type of the per-ray arithmetic.

    Returns:
        The nearest hit per ray, arrays of shape ``(R, C)``.
    """
    rows, cols = v.shape[0], u.shape[1]
    grid = u.shape[0] == 1
    depth = np.full((rows, cols), np.inf, dtype)
    ids = np.full((rows, cols), -1, np.int32)
    s_all = np.zeros((rows, cols), dtype)
    t_all = np.zeros((rows, cols), dtype)
    xu_all = ((u - rig.cx) / rig.focal).astype(dtype)
    yv_all = ((v - rig.cy) / rig.focal).astype(dtype)
    v_flat = v[:, 0]
    u_flat = u[0]
    camera = np.array([cam_x, 0.0, 0.0])
    for k, patch in enumerate(patches):
        if patch.outward is not None and float(np.dot(patch.outward, camera - patch.origin)) <= 0.0:
            continue  # back face of a closed solid
        rel = patch.corners() - camera
        if np.any(rel[:, 2] <= 0):
            raise ValueError(f"patch {k} has a corner at or behind the camera plane (z <= 0): {patch.corners()}")
        pu = rig.focal * rel[:, 0] / rel[:, 2] + rig.cx
        pv = rig.focal * rel[:, 1] / rel[:, 2] + rig.cy
        r0 = int(np.searchsorted(v_flat, pv.min() - 1.0, "left"))
        r1 = int(np.searchsorted(v_flat, pv.max() + 1.0, "right"))
        if grid:
            c0 = int(np.searchsorted(u_flat, pu.min() - 1.0, "left"))
            c1 = int(np.searchsorted(u_flat, pu.max() + 1.0, "right"))
            xu = xu_all[:, c0:c1]
        else:
            c0, c1 = 0, cols
            xu = xu_all[r0:r1]
        if r1 <= r0 or c1 <= c0:
            continue
        yv = yv_all[r0:r1]
        normal = np.cross(patch.edge_u, patch.edge_v)
        g1, g2 = _dual_basis(patch.edge_u, patch.edge_v)
        to_camera = camera - patch.origin
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = dtype(np.dot(normal, -to_camera)) / (normal[0] * xu + (normal[1] * yv + normal[2]))
            s = dtype(np.dot(g1, to_camera)) + z * (g1[0] * xu + (g1[1] * yv + g1[2]))
            t = dtype(np.dot(g2, to_camera)) + z * (g2[0] * xu + (g2[1] * yv + g2[2]))
            block = (slice(r0, r1), slice(c0, c1))
            hit = (z > 0) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1) & (z < depth[block])
        np.copyto(depth[block], z, where=hit)
        np.copyto(s_all[block], s, where=hit)
        np.copyto(t_all[block], t, where=hit)
        ids[block][hit] = k
    return _Hits(depth=depth, patch=ids, s=s_all, t=t_all)


def _shade(scene: StereoScene, hits: _Hits) -> np.ndarray:
    """Colour of every ray from its patch's texture (bilinear), float32 ``(R, C, 3)``."""
    ids = hits.patch.ravel()
    if ids.size and ids.min() < 0:
        raise RuntimeError(f"{int((ids < 0).sum())} rays hit no surface; the background must cover both views "
                           "(this is a bug in the scene construction)")
    s, t = hits.s.ravel(), hits.t.ravel()
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=len(scene.patches))
    out = np.empty((ids.size, 3), np.float32)
    start = 0
    for k, count in enumerate(counts):
        if count == 0:
            continue
        idx = order[start:start + count]
        start += count
        tex = scene.textures[scene.patches[k].texture]
        th, tw = tex.shape[:2]
        out[idx] = _sample_bilinear(tex, s[idx] * tw - 0.5, t[idx] * th - 0.5)
    return out.reshape(*hits.patch.shape, 3)


def _sample_bilinear(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup at texel coordinates ``(x, y)`` (edge texels replicated), ``(N, 3)`` float32."""
    n = x.size
    chunk = 4096  # OpenCV maps must be below 32767 in each dimension; fold the 1-D list into rows
    rows = -(-n // chunk)
    map_x = np.zeros(rows * chunk, np.float32)
    map_y = np.zeros(rows * chunk, np.float32)
    map_x[:n] = x
    map_y[:n] = y
    sampled = cv2.remap(texture, map_x.reshape(rows, chunk), map_y.reshape(rows, chunk), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    return sampled.reshape(-1, 3)[:n]


# ---------------------------------------------------------------------------------------------------- rendering
def render_scene(
    scene: StereoScene,
    rig: StereoRig,
    *,
    anti_alias: int = 2,
    photometric_jitter: float = 0.0,
    rng: np.random.Generator | None = None,
) -> StereoRender:
    """Render both views of ``scene`` and their exact ground truth.

    Args:
        scene: What to render; a background must cover both views entirely.
        rig: The stereo rig.
        anti_alias: Colours average ``anti_alias ** 2`` sub-pixel rays per pixel (1 = centre ray only);
            disparities always come from the centre ray, so they stay exact.
        photometric_jitter: Independent per-view, per-channel gain ``1 +- j`` and offset ``+- j / 2`` (0 = both
            views see identical colours, as in Scene Flow's clean pass).
        rng: Randomness for the jitter; required when ``photometric_jitter > 0``.

    Returns:
        The :class:`StereoRender`.

    Raises:
        ValueError: ``anti_alias`` is not a positive integer, the jitter is negative or given without ``rng``, or a
            patch reaches behind a camera.
        RuntimeError: Some ray hits no surface (the background does not cover a view).
    """
    if not isinstance(anti_alias, (int, np.integer)) or anti_alias < 1:
        raise ValueError(f"`anti_alias` must be a positive integer, got {anti_alias!r}")
    if not photometric_jitter >= 0.0:
        raise ValueError(f"`photometric_jitter` must be >= 0, got {photometric_jitter!r}")
    if photometric_jitter > 0.0 and rng is None:
        raise ValueError("`photometric_jitter` > 0 needs an `rng`")
    h, w, aa = rig.height, rig.width, int(anti_alias)
    u_centre = np.arange(w, dtype=np.float64)[None, :]
    v_centre = np.arange(h, dtype=np.float64)[:, None]
    u_sub = ((np.arange(w * aa) + 0.5) / aa - 0.5)[None, :]
    v_sub = ((np.arange(h * aa) + 0.5) / aa - 0.5)[:, None]

    images, centres = [], []
    for cam_x in (0.0, rig.baseline):
        centre = _cast(scene.patches, rig, cam_x, u_centre, v_centre, np.float64)
        if aa == 1:
            colour = _shade(scene, centre)
        else:
            sub = _cast(scene.patches, rig, cam_x, u_sub, v_sub, np.float32)
            colour = _shade(scene, sub).reshape(h, aa, w, aa, 3).mean(axis=(1, 3))
        if not np.isfinite(centre.depth).all():
            raise RuntimeError(f"{int((~np.isfinite(centre.depth)).sum())} pixel-centre rays of the camera at "
                               f"x={cam_x} hit no surface; the background must cover both views")
        if photometric_jitter > 0.0:
            gain = 1.0 + rng.uniform(-photometric_jitter, photometric_jitter, size=3)
            offset = rng.uniform(-photometric_jitter / 2, photometric_jitter / 2, size=3)
            colour = colour * gain.astype(np.float32) + offset.astype(np.float32)
        images.append(np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8))
        centres.append(centre)
    left, right = centres
    disparity_left = rig.disparity(left.depth)
    disparity_right = rig.disparity(right.depth)

    # Occlusion: cast from the right camera towards each left pixel's surface point (same row, column x - d).
    u_in_right = u_centre - disparity_left
    recast = _cast(scene.patches, rig, rig.baseline, u_in_right, v_centre, np.float64)
    out_of_frame = u_in_right < -0.5
    occluded = out_of_frame | (recast.depth < left.depth * (1.0 - _OCCLUSION_RTOL))

    object_ids = np.array([p.object_id for p in scene.patches], dtype=np.int64)
    object_index = object_ids[left.patch]
    return StereoRender(
        left=images[0],
        right=images[1],
        disparity_left=disparity_left.astype(np.float32),
        disparity_right=disparity_right.astype(np.float32),
        occlusion_left=occluded,
        object_mask_left=object_index > 0,
        out_of_frame_left=out_of_frame,
        object_index_left=np.minimum(object_index, 255).astype(np.uint8),
        focal=float(rig.focal),
        baseline=float(rig.baseline),
    )


# ---------------------------------------------------------------------------------------------------- random scenes
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
    return d_far ** 0.7 * d_near ** 0.3 / rig.baseline


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
    points = np.concatenate([_ray_plane_depth(rig, 0.0, cu, cv, normal),
                             _ray_plane_depth(rig, rig.baseline, cu, cv, normal)])
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
    rig: StereoRig, rng: np.random.Generator, d_lo: float, d_min: float, d_max: float, object_id: int,
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
        patch = Patch(origin=(centre - du - dv) * scale, edge_u=2 * du * scale, edge_v=2 * dv * scale,
                      texture=len(textures), object_id=object_id)
        textures.append(_texture_for(rng, (2 * a * scale, 2 * b * scale), _texel_density(rig, d)))
        return [patch]
    raise RuntimeError("could not place a fronto-parallel rectangle (bug)")


def _box(
    rig: StereoRig, rng: np.random.Generator, d_lo: float, d_min: float, d_max: float, object_id: int,
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
        patches.append(Patch(origin=origin, edge_u=edge_u, edge_v=edge_v, texture=len(textures),
                             object_id=object_id, outward=outward))
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
        raise ValueError(f"need 0 < min_disparity < max_disparity, got min_disparity={min_disparity!r}, "
                         f"max_disparity={max_disparity!r}")
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


def render_stereo_pair(
    height: int,
    width: int,
    *,
    max_disparity: float,
    seed: int | np.random.Generator,
    anti_alias: int = 2,
    min_disparity: float | None = None,
    num_objects: int | None = None,
    photometric_jitter: float = 0.0,
) -> StereoRender:
    """Render a random scene (see :func:`random_scene`) with a rig of focal length ``width`` and baseline 1.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        max_disparity: Largest disparity in the pair (pixels).
        seed: Integer seed or generator; the same seed gives the same pair.
        anti_alias: Sub-pixel rays per axis for the colours (disparity always from the pixel centre).
        min_disparity: Smallest disparity; default ``max(0.5, max_disparity / 20)``.
        num_objects: Foreground objects; ``None`` draws 3..8.
        photometric_jitter: Per-view colour gain/offset amplitude (0 = identical colours in both views).

    Returns:
        The :class:`StereoRender`.

    Raises:
        ValueError: Non-positive sizes or an empty disparity range (see :func:`random_scene`).
    """
    if not (isinstance(max_disparity, (int, float)) and math.isfinite(max_disparity) and max_disparity > 0):
        raise ValueError(f"`max_disparity` must be a positive finite number, got {max_disparity!r}")
    if min_disparity is None:
        min_disparity = max(0.5, max_disparity / 20.0)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rig = StereoRig(height=height, width=width, focal=float(width), baseline=1.0)
    scene = random_scene(rig, rng, min_disparity=float(min_disparity), max_disparity=float(max_disparity),
                         num_objects=num_objects)
    return render_scene(scene, rig, anti_alias=anti_alias, photometric_jitter=photometric_jitter, rng=rng)
