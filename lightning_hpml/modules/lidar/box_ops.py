"""Geometry of LiDAR-frame 3-D boxes ``(x, y, z, l, w, h, yaw)``: corners, points-in-boxes, enlargement, BEV NMS.

Convention (OpenPCDet / KITTI LiDAR frame): ``(x, y, z)`` is the box centre, ``l`` the size along the heading,
``w`` across it, ``h`` vertical, ``yaw`` counter-clockwise about ``+z`` from ``+x``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lightning_hpml.metrics.rotated_iou import rotated_bev_iou

__all__ = [
    "bev_nms",
    "boxes_to_corners_3d",
    "check_boxes",
    "enlarge_boxes",
    "points_in_boxes",
    "points_in_boxes_mask",
    "rotate_points_along_z",
]


def check_boxes(name: str, boxes: Tensor) -> Tensor:
    """Raise a ValueError naming ``name`` unless ``boxes`` is a floating ``(M, 7)`` tensor; return it."""
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 7 or not boxes.is_floating_point():
        got = f"{tuple(boxes.shape)} {boxes.dtype}" if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"`{name}` must be a floating (M, 7) tensor of boxes (x, y, z, l, w, h, yaw), got {got}")
    return boxes


def rotate_points_along_z(points: Tensor, angle: Tensor) -> Tensor:
    """Rotate ``points`` (N, K, 3+) counter-clockwise about ``z`` by ``angle`` (N,) radians (extra columns kept)."""
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]
    x, y = points[..., 0], points[..., 1]
    rotated = torch.stack([x * cos - y * sin, x * sin + y * cos], dim=-1)
    return torch.cat([rotated, points[..., 2:]], dim=-1)


def boxes_to_corners_3d(boxes: Tensor) -> Tensor:
    """Corners ``(M, 8, 3)`` of ``boxes`` (M, 7): bottom face first, counter-clockwise from ``(+l/2, +w/2)``."""
    template = boxes.new_tensor(
        [[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]]
    )
    local = boxes[:, None, 3:6] * template[None] / 2
    return rotate_points_along_z(local, boxes[:, 6]) + boxes[:, None, 0:3]


def points_in_boxes_mask(points: Tensor, boxes: Tensor) -> Tensor:
    """``(N, M)`` bool: point ``i`` lies inside box ``j``.

    Inside means ``|dz| <= h/2`` and, in the box frame, ``-l/2 < x < l/2`` and ``-w/2 < y < w/2`` (the inequalities of
    OpenPCDet's ``points_in_boxes`` kernel).
    """
    if points.ndim != 2 or points.shape[-1] < 3:
        raise ValueError(f"`points` must be (N, 3+), got {tuple(points.shape)}")
    check_boxes("boxes", boxes)
    shift = points[:, None, :3] - boxes[None, :, :3]  # (N, M, 3)
    cos, sin = boxes[:, 6].cos(), boxes[:, 6].sin()
    local_x = shift[..., 0] * cos + shift[..., 1] * sin
    local_y = -shift[..., 0] * sin + shift[..., 1] * cos
    half = boxes[None, :, 3:6] / 2
    return (
        (shift[..., 2].abs() <= half[..., 2])
        & (local_x > -half[..., 0])
        & (local_x < half[..., 0])
        & (local_y > -half[..., 1])
        & (local_y < half[..., 1])
    )


def points_in_boxes(points: Tensor, boxes: Tensor) -> Tensor:
    """Index ``(N,)`` of the first box (lowest index) containing each point, -1 for none."""
    mask = points_in_boxes_mask(points, boxes)
    if mask.shape[1] == 0:
        return torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    first = mask.to(torch.uint8).argmax(dim=1)
    return torch.where(mask.any(dim=1), first, torch.full_like(first, -1))


def enlarge_boxes(boxes: Tensor, extra: float | tuple[float, float, float]) -> Tensor:
    """Boxes with ``extra`` added to ``(l, w, h)`` (the full size, i.e. ``extra / 2`` on each face)."""
    out = boxes.clone()
    out[:, 3:6] = out[:, 3:6] + boxes.new_tensor(extra if isinstance(extra, (tuple, list)) else [extra] * 3)
    return out


def bev_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression in bird's-eye view; indices of the kept boxes, by decreasing score.

    Overlaps are the exact rotated BEV IoU of :func:`lightning_hpml.metrics.rotated_iou.rotated_bev_iou` (as
    OpenPCDet's ``nms_gpu``), computed only between each kept box and the boxes not yet suppressed.
    """
    check_boxes("boxes", boxes)
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"`scores` must be (M,) = {tuple(boxes.shape[:1])}, got {tuple(scores.shape)}")
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    ordered = boxes[order]
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.flatnonzero(~suppressed[i + 1 :]) + i + 1
        if len(rest) == 0:
            break
        iou = rotated_bev_iou(ordered[i : i + 1], ordered[torch.from_numpy(rest).to(boxes.device)])[0]
        suppressed[rest[(iou > iou_threshold).cpu().numpy()]] = True
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]
