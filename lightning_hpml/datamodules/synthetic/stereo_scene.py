"""Rendering of synthetic stereo pairs with exact ground-truth disparity, occlusion and object masks.

Why render instead of warping one image: a disparity map obtained by warping is only as good as the warp (holes,
resampling, no real occlusions). Here both views are ray cast independently from the same 3-D geometry
(:mod:`.scene_geometry`; random instances from :mod:`.random_scene`), so the disparity of every pixel is
``f * B / Z`` of the surface its centre ray hits - exact up to floating point - and occlusions, disparity
discontinuities and slanted surfaces arise as they do in real scenes.

Renderer (:func:`render_scene`): for each view, every ray is intersected with every patch whose projected bounding
box it can fall in, keeping the nearest hit (vectorised over pixels; the only Python loop is over the few dozen
patches). A hit's colour is looked up in its patch's texture at the patch coordinates ``(s, t)``, so a surface
point has the same colour in both views. Colours are the average of ``anti_alias ** 2`` sub-pixel rays; disparity
comes from the pixel-centre ray. The occlusion mask of the left view is computed by re-casting, from the right
camera, the ray towards each left pixel's surface point: the point is occluded when something nearer lies on that
ray, or when it projects outside the right image.

:func:`render_stereo_pair` is the one-call entry point: a random scene for a rig with focal length ``width`` and
baseline 1, rendered; the same seed gives the same pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lightning_hpml.datamodules.synthetic.random_scene import default_min_disparity, random_scene
from lightning_hpml.datamodules.synthetic.scene_geometry import Patch, StereoRig, StereoScene

__all__ = ["Patch", "StereoRender", "StereoRig", "StereoScene", "render_scene", "render_stereo_pair"]

_OCCLUSION_RTOL = 1e-6
"""Relative depth margin by which a surface must be nearer than a point to count as occluding it."""


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
    normal_left: np.ndarray | None = None
    """float32 ``(H, W, 3)`` unit surface normal of each left pixel in the left camera frame (``x`` right, ``y``
    down, ``z`` forward), oriented towards the camera (``n . ray < 0``); exact, since every surface is a plane.
    Only computed when :func:`render_scene` is called with ``with_normals=True``, else ``None``."""


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
        raise RuntimeError(
            f"{int((ids < 0).sum())} rays hit no surface; the background must cover both views "
            "(this is a bug in the scene construction)"
        )
    s, t = hits.s.ravel(), hits.t.ravel()
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=len(scene.patches))
    out = np.empty((ids.size, 3), np.float32)
    start = 0
    for k, count in enumerate(counts):
        if count == 0:
            continue
        idx = order[start : start + count]
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
    sampled = cv2.remap(
        texture,
        map_x.reshape(rows, chunk),
        map_y.reshape(rows, chunk),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return sampled.reshape(-1, 3)[:n]


# ---------------------------------------------------------------------------------------------------- rendering
def render_scene(
    scene: StereoScene,
    rig: StereoRig,
    *,
    anti_alias: int = 2,
    photometric_jitter: float = 0.0,
    rng: np.random.Generator | None = None,
    with_normals: bool = False,
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
        with_normals: Also return :attr:`StereoRender.normal_left`, the exact per-pixel normal of the left view.

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
            # INTER_AREA with an integer factor is the exact mean of each aa x aa block (and much faster).
            colour = cv2.resize(_shade(scene, sub), (w, h), interpolation=cv2.INTER_AREA)
        if not np.isfinite(centre.depth).all():
            raise RuntimeError(
                f"{int((~np.isfinite(centre.depth)).sum())} pixel-centre rays of the camera at "
                f"x={cam_x} hit no surface; the background must cover both views"
            )
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

    normal_left = _patch_normals(scene.patches, camera=np.zeros(3))[left.patch] if with_normals else None
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
        normal_left=normal_left,
    )


def _patch_normals(patches: list[Patch], camera: np.ndarray) -> np.ndarray:
    """Unit normal of every patch, oriented towards ``camera``, float32 ``(P, 3)``.

    For a plane the sign of ``n . (p - camera)`` is the same at every point ``p`` of it, so orienting the patch's
    normal once orients it for every pixel that sees the patch.
    """
    normals = np.empty((len(patches), 3), np.float64)
    for k, patch in enumerate(patches):
        n = np.cross(patch.edge_u, patch.edge_v)
        n = n / np.linalg.norm(n)
        if float(np.dot(n, patch.origin - camera)) > 0.0:
            n = -n
        normals[k] = n
    return normals.astype(np.float32)


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
        min_disparity: Smallest disparity; default :func:`default_min_disparity`.
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
        min_disparity = default_min_disparity(max_disparity)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rig = StereoRig(height=height, width=width, focal=float(width), baseline=1.0)
    scene = random_scene(
        rig, rng, min_disparity=float(min_disparity), max_disparity=float(max_disparity), num_objects=num_objects
    )
    return render_scene(scene, rig, anti_alias=anti_alias, photometric_jitter=photometric_jitter, rng=rng)
