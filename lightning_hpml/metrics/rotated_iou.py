r"""Exact IoU of rotated boxes: bird's-eye-view (BEV) rectangles and upright 3D boxes, vectorised in PyTorch.

Box conventions
---------------
**LiDAR frame** (OpenPCDet, ``(N, 7)``): ``x, y, z, l, w, h, yaw`` with ``(x, y, z)`` the box *centre*, ``l`` the
length along the heading direction, ``w`` the width across it, ``h`` the height along ``z`` and ``yaw`` the heading
angle, counter-clockwise about ``+z`` from ``+x``. The BEV rectangle lives in the ``x-y`` plane.

**KITTI rectified camera frame** (``label_2`` order, ``(N, 7)``): ``x, y, z, h, w, l, rotation_y`` with ``(x, y, z)``
the *bottom centre* of the box, ``y`` pointing down, and ``rotation_y`` about ``+y`` (the heading is
``(cos ry, 0, -sin ry)``). :func:`camera_boxes_to_z_up` maps such a box to the LiDAR-style geometry above, with

.. math::
    (x, y, z, h, w, l, r_y) \mapsto (x,\; z,\; -y + h/2,\; l,\; w,\; h,\; -r_y).

The map :math:`(x, y, z) \mapsto (x, z, -y)` is a proper rotation (right-handed to right-handed), so every IoU is
unchanged; the BEV plane becomes the camera ``x-z`` plane, the heading ``(cos ry, -sin ry)`` in that plane is the
counter-clockwise angle ``-ry``, and the box spans ``[y - h, y]`` in camera ``y`` (``[-y, -y + h]`` after the map).
This is the geometry the KITTI evaluators use (BEV = ``x-z`` plane with ``l, w``; height overlap along ``y`` from the
bottom centre); it is *not* the calibration-based camera-to-LiDAR transform, which IoU does not need.

Algorithm
---------
The intersection of two convex polygons is convex, and its vertices are exactly (i) the corners of either rectangle
that lie inside (or on) the other and (ii) the crossings of their edges. For every box pair all 4 + 4 + 16 candidate
points are computed at once (float64), the valid ones are sorted by angle around their mean, and the area follows from
the shoelace formula. Parallel edges give no crossing (their shared points are corners already caught by (i)), so
identical, touching, nested and disjoint boxes need no special case and never produce NaN. Pairs whose bounding
circles do not meet are skipped (intersection 0). Work is chunked to bound memory.

The same result as a polygon library (e.g. shapely) up to float64 round-off; the official KITTI python evaluator's
CUDA/numba ``rotate_iou`` computes it in float32. Reimplemented from the geometry, no code copied.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "camera_boxes_bev_iou",
    "camera_boxes_iou_3d",
    "camera_boxes_to_z_up",
    "rotated_bev_intersection",
    "rotated_bev_iou",
    "rotated_iou_3d",
]

_CHUNK_PAIRS = 1 << 16
_REL_TOL = 1e-9


def _check_boxes(name: str, boxes: Tensor, columns: int = 7, layout: str = "x, y, z, l, w, h, yaw") -> Tensor:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, {columns}) ({layout}), got {type(boxes)}")
    if boxes.ndim != 2 or boxes.shape[1] != columns:
        raise ValueError(f"`{name}` must have shape (N, {columns}) ({layout}), got {tuple(boxes.shape)}")
    if not (boxes.is_floating_point() or boxes.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"`{name}` must be a real tensor, got dtype {boxes.dtype}")
    return boxes.to(torch.float64)


def _out_dtype(a: Tensor, b: Tensor) -> torch.dtype:
    dtype = torch.promote_types(a.dtype, b.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _corners(bev: Tensor) -> Tensor:
    """``(P, 5)`` rectangles ``x, y, l, w, yaw`` -> ``(P, 4, 2)`` corners in counter-clockwise order."""
    cx, cy, half_l, half_w, yaw = bev[:, 0], bev[:, 1], bev[:, 2] / 2, bev[:, 3] / 2, bev[:, 4]
    local_x = torch.stack([half_l, -half_l, -half_l, half_l], dim=1)
    local_y = torch.stack([half_w, half_w, -half_w, -half_w], dim=1)
    cos, sin = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
    x = cx[:, None] + cos * local_x - sin * local_y
    y = cy[:, None] + sin * local_x + cos * local_y
    return torch.stack([x, y], dim=-1)


def _cross(u: Tensor, v: Tensor) -> Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _points_in_rect(points: Tensor, rect: Tensor, tol: Tensor) -> Tensor:
    """Which of ``points`` ``(P, K, 2)`` lie in (or on) rectangles ``rect`` ``(P, 5)``, with tolerance ``(P,)``."""
    d = points - rect[:, None, :2]
    cos, sin = torch.cos(rect[:, 4])[:, None], torch.sin(rect[:, 4])[:, None]
    along = d[..., 0] * cos + d[..., 1] * sin
    across = -d[..., 0] * sin + d[..., 1] * cos
    t = tol[:, None]
    return (along.abs() <= rect[:, 2:3] / 2 + t) & (across.abs() <= rect[:, 3:4] / 2 + t)


def _paired_intersection_area(a: Tensor, b: Tensor) -> Tensor:
    """Intersection areas of rectangle pairs ``a[i]``, ``b[i]`` (both ``(P, 5)`` float64: x, y, l, w, yaw)."""
    ca, cb = _corners(a), _corners(b)  # (P, 4, 2)
    scale = 1.0 + torch.maximum(a[:, 2:4].abs().amax(1), b[:, 2:4].abs().amax(1))
    tol = _REL_TOL * scale

    a_in_b = _points_in_rect(ca, b, tol)
    b_in_a = _points_in_rect(cb, a, tol)

    # Edge i of A (ca[i] -> ca[i+1]) against edge j of B: ca[i] + t ra[i] = cb[j] + s rb[j], t, s in [0, 1].
    ra = torch.roll(ca, -1, dims=1) - ca
    rb = torch.roll(cb, -1, dims=1) - cb
    ra_e, ca_e = ra[:, :, None, :], ca[:, :, None, :]  # (P, 4, 1, 2)
    rb_e, cb_e = rb[:, None, :, :], cb[:, None, :, :]  # (P, 1, 4, 2)
    denom = _cross(ra_e, rb_e)  # (P, 4, 4)
    diff = cb_e - ca_e
    lengths = ra_e.norm(dim=-1) * rb_e.norm(dim=-1)
    not_parallel = denom.abs() > 1e-12 * lengths
    safe = torch.where(not_parallel, denom, torch.ones_like(denom))
    t = _cross(diff, rb_e) / safe
    s = _cross(diff, ra_e) / safe
    eps = _REL_TOL
    crossing = not_parallel & (t >= -eps) & (t <= 1 + eps) & (s >= -eps) & (s <= 1 + eps)
    cross_points = ca_e + t[..., None] * ra_e  # (P, 4, 4, 2)

    points = torch.cat([ca, cb, cross_points.flatten(1, 2)], dim=1)  # (P, 24, 2)
    valid = torch.cat([a_in_b, b_in_a, crossing.flatten(1, 2)], dim=1)  # (P, 24)

    count = valid.sum(1)
    weights = valid.to(points.dtype)
    centre = (points * weights[..., None]).sum(1) / count.clamp(min=1)[:, None].to(points.dtype)
    rel = points - centre[:, None, :]
    angle = torch.atan2(rel[..., 1], rel[..., 0])
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))  # invalid points sort last
    order = angle.argsort(dim=1)
    rel = torch.gather(rel, 1, order[..., None].expand_as(rel))
    valid_sorted = torch.gather(valid, 1, order)
    # Invalid slots repeat the first vertex: they add zero-area terms and close the polygon.
    rel = torch.where(valid_sorted[..., None], rel, rel[:, :1, :])
    area = 0.5 * _cross(rel, torch.roll(rel, -1, dims=1)).sum(1).abs()
    return torch.where(count >= 3, area, torch.zeros_like(area))


def _bev_intersection(a: Tensor, b: Tensor, aligned: bool) -> Tensor:
    """BEV intersection areas for ``(N, 5)`` x ``(M, 5)`` float64 rectangles: ``(N, M)``, or ``(N,)`` if aligned."""
    if aligned:
        ia = torch.arange(a.shape[0], device=a.device)
        ib = ia
        out_shape: tuple[int, ...] = (a.shape[0],)
    else:
        ia, ib = torch.meshgrid(
            torch.arange(a.shape[0], device=a.device), torch.arange(b.shape[0], device=b.device), indexing="ij"
        )
        ia, ib = ia.reshape(-1), ib.reshape(-1)
        out_shape = (a.shape[0], b.shape[0])
    out = torch.zeros(ia.shape[0], dtype=torch.float64, device=a.device)
    if ia.numel() == 0:
        return out.reshape(out_shape)
    # Bounding-circle test: only pairs whose circles meet can overlap.
    radius_a = 0.5 * torch.hypot(a[:, 2], a[:, 3])
    radius_b = 0.5 * torch.hypot(b[:, 2], b[:, 3])
    dist = torch.linalg.vector_norm(a[ia, :2] - b[ib, :2], dim=1)
    candidates = torch.nonzero(dist <= radius_a[ia] + radius_b[ib] + _REL_TOL, as_tuple=True)[0]
    for start in range(0, candidates.numel(), _CHUNK_PAIRS):
        idx = candidates[start : start + _CHUNK_PAIRS]
        out[idx] = _paired_intersection_area(a[ia[idx]], b[ib[idx]])
    return out.reshape(out_shape)


def _check_aligned(a: Tensor, b: Tensor, aligned: bool) -> None:
    if aligned and a.shape[0] != b.shape[0]:
        raise ValueError(
            f"aligned=True needs as many boxes in `boxes_a` as in `boxes_b`, got {a.shape[0]} and {b.shape[0]}"
        )


def _safe_ratio(inter: Tensor, union: Tensor) -> Tensor:
    positive = union > 0
    return torch.where(positive, inter / torch.where(positive, union, torch.ones_like(union)), torch.zeros_like(union))


def rotated_bev_intersection(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    """Area of the BEV (``x-y`` plane) intersection of LiDAR-frame boxes.

    Args:
        boxes_a: ``(N, 7)`` boxes ``x, y, z, l, w, h, yaw`` (only ``x, y, l, w, yaw`` are used).
        boxes_b: ``(M, 7)`` boxes, same layout.
        aligned: If True, ``N == M`` and the areas of the pairs ``(a[i], b[i])`` are returned, shape ``(N,)``.

    Returns:
        ``(N, M)`` (or ``(N,)``) intersection areas in squared box units, in the promoted floating dtype of the inputs.
    """
    a, b = _check_boxes("boxes_a", boxes_a), _check_boxes("boxes_b", boxes_b)
    _check_aligned(a, b, aligned)
    inter = _bev_intersection(a[:, [0, 1, 3, 4, 6]], b[:, [0, 1, 3, 4, 6]], aligned)
    return inter.to(_out_dtype(boxes_a, boxes_b))


def rotated_bev_iou(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    r"""Rotated IoU of LiDAR-frame boxes in bird's-eye view (the ``x-y`` plane).

    :math:`\mathrm{IoU} = |A \cap B| / (|A| + |B| - |A \cap B|)` for the rectangles of ``x, y, l, w, yaw``; 0 where the
    union is empty (degenerate zero-size boxes).

    Args:
        boxes_a: ``(N, 7)`` boxes ``x, y, z, l, w, h, yaw`` (OpenPCDet convention, yaw counter-clockwise about ``z``).
        boxes_b: ``(M, 7)`` boxes, same layout.
        aligned: If True, ``N == M`` and the IoU of the pairs ``(a[i], b[i])`` is returned, shape ``(N,)``.

    Returns:
        ``(N, M)`` (or ``(N,)``) IoU in ``[0, 1]``, in the promoted floating dtype of the inputs.

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
        >>> b = torch.tensor([[1.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0], [0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 1.5707963267948966]])
        >>> rotated_bev_iou(a, b)  # shifted by 1 m: 6 / 10; crossed: 4 / 12
        tensor([[0.6000, 0.3333]])
    """
    a, b = _check_boxes("boxes_a", boxes_a), _check_boxes("boxes_b", boxes_b)
    _check_aligned(a, b, aligned)
    inter = _bev_intersection(a[:, [0, 1, 3, 4, 6]], b[:, [0, 1, 3, 4, 6]], aligned)
    area_a, area_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    union = (area_a + area_b - inter) if aligned else (area_a[:, None] + area_b[None, :] - inter)
    return _safe_ratio(inter, union).clamp(0.0, 1.0).to(_out_dtype(boxes_a, boxes_b))


def rotated_iou_3d(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    r"""3D IoU of upright LiDAR-frame boxes rotated about ``z``.

    Intersection volume = rotated BEV intersection area x overlap of the ``z`` extents ``[z - h/2, z + h/2]``;
    IoU = intersection / (``l w h`` of A + ``l w h`` of B - intersection); 0 where the union is empty.

    Args:
        boxes_a: ``(N, 7)`` boxes ``x, y, z, l, w, h, yaw`` with ``z`` the box centre.
        boxes_b: ``(M, 7)`` boxes, same layout.
        aligned: If True, ``N == M`` and the IoU of the pairs ``(a[i], b[i])`` is returned, shape ``(N,)``.

    Returns:
        ``(N, M)`` (or ``(N,)``) IoU in ``[0, 1]``, in the promoted floating dtype of the inputs.
    """
    a, b = _check_boxes("boxes_a", boxes_a), _check_boxes("boxes_b", boxes_b)
    _check_aligned(a, b, aligned)
    inter_bev = _bev_intersection(a[:, [0, 1, 3, 4, 6]], b[:, [0, 1, 3, 4, 6]], aligned)
    top_a, bottom_a = a[:, 2] + a[:, 5] / 2, a[:, 2] - a[:, 5] / 2
    top_b, bottom_b = b[:, 2] + b[:, 5] / 2, b[:, 2] - b[:, 5] / 2
    vol_a, vol_b = a[:, 3] * a[:, 4] * a[:, 5], b[:, 3] * b[:, 4] * b[:, 5]
    if aligned:
        dz = (torch.minimum(top_a, top_b) - torch.maximum(bottom_a, bottom_b)).clamp(min=0)
        inter = inter_bev * dz
        union = vol_a + vol_b - inter
    else:
        dz = (
            torch.minimum(top_a[:, None], top_b[None, :]) - torch.maximum(bottom_a[:, None], bottom_b[None, :])
        ).clamp(min=0)
        inter = inter_bev * dz
        union = vol_a[:, None] + vol_b[None, :] - inter
    return _safe_ratio(inter, union).clamp(0.0, 1.0).to(_out_dtype(boxes_a, boxes_b))


def camera_boxes_to_z_up(boxes: Tensor) -> Tensor:
    """Map KITTI camera-frame boxes to the z-up geometry of :func:`rotated_iou_3d` (IoU-preserving).

    Args:
        boxes: ``(N, 7)`` boxes ``x, y, z, h, w, l, rotation_y`` in rectified camera coordinates, ``(x, y, z)`` the
            bottom centre (KITTI ``label_2`` location, dimensions in the file's ``h, w, l`` order).

    Returns:
        ``(N, 7)`` float64 boxes ``x, z, -y + h/2, l, w, h, -rotation_y``: a proper rotation of the camera frame (see
        the module docstring), so the BEV plane is camera ``x-z`` and the vertical axis is camera ``-y``.
    """
    c = _check_boxes("boxes", boxes, layout="x, y, z, h, w, l, rotation_y")
    x, y, z, h, w, length, ry = c.unbind(1)
    return torch.stack([x, z, -y + h / 2, length, w, h, -ry], dim=1)


def camera_boxes_bev_iou(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    """BEV IoU (camera ``x-z`` plane, ``l x w`` rectangles rotated by ``rotation_y``) of KITTI camera-frame boxes.

    Args:
        boxes_a: ``(N, 7)`` boxes ``x, y, z, h, w, l, rotation_y`` (bottom centre, rectified camera frame).
        boxes_b: ``(M, 7)`` boxes, same layout.
        aligned: If True, ``N == M`` and pairwise ``(N,)`` values are returned.

    Returns:
        ``(N, M)`` (or ``(N,)``) IoU, the quantity the KITTI evaluators call the BEV overlap.
    """
    a = camera_boxes_to_z_up(_check_boxes("boxes_a", boxes_a, layout="x, y, z, h, w, l, rotation_y"))
    b = camera_boxes_to_z_up(_check_boxes("boxes_b", boxes_b, layout="x, y, z, h, w, l, rotation_y"))
    return rotated_bev_iou(a, b, aligned).to(_out_dtype(boxes_a, boxes_b))


def camera_boxes_iou_3d(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    """3D IoU of KITTI camera-frame boxes (BEV overlap in ``x-z`` x overlap of the ``[y - h, y]`` extents).

    Args:
        boxes_a: ``(N, 7)`` boxes ``x, y, z, h, w, l, rotation_y`` (bottom centre, rectified camera frame).
        boxes_b: ``(M, 7)`` boxes, same layout.
        aligned: If True, ``N == M`` and pairwise ``(N,)`` values are returned.

    Returns:
        ``(N, M)`` (or ``(N,)``) 3D IoU.
    """
    a = camera_boxes_to_z_up(_check_boxes("boxes_a", boxes_a, layout="x, y, z, h, w, l, rotation_y"))
    b = camera_boxes_to_z_up(_check_boxes("boxes_b", boxes_b, layout="x, y, z, h, w, l, rotation_y"))
    return rotated_iou_3d(a, b, aligned).to(_out_dtype(boxes_a, boxes_b))
