"""Bird's-eye-view pictures of a LiDAR scene: points from above with ground-truth and predicted boxes.

The picture looks down the LiDAR z axis with x (forward) pointing up the image and y (left) pointing left, as
OpenPCDet's and KITTI's BEV figures. Points are grey, brighter with reflectance; ground-truth boxes are green,
predictions red (brighter with score), each with a short line from the centre to the front edge showing the heading.
Boxes are LiDAR-frame ``(x, y, z, l, w, h, yaw)`` rows, ``l`` along the heading.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from lightning_hpml.datamodules.formats.kitti_object import boxes_to_corners

__all__ = ["bev_corners", "bird_eye_view"]

_GT_COLOUR = (60, 220, 90)
_PRED_COLOUR = (255, 60, 40)


def bev_corners(boxes) -> np.ndarray:
    """The 4 ground-plane corners (M, 4, 2) of boxes (M, >=7), counter-clockwise from front-left."""
    return boxes_to_corners(_numpy("boxes", boxes, 7)[:, :7])[:, :4, :2]


def _numpy(name: str, value, columns: int | None) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if columns is not None and (array.ndim != 2 or array.shape[1] < columns):
        raise ValueError(f"`{name}` must be an (N, >={columns}) array, got shape {array.shape}")
    return array


def bird_eye_view(
    points,
    gt_boxes=None,
    pred_boxes=None,
    pred_scores=None,
    x_range: tuple[float, float] = (0.0, 70.4),
    y_range: tuple[float, float] = (-40.0, 40.0),
    resolution: float = 0.1,
) -> np.ndarray:
    """Render a ``uint8`` (H, W, 3) RGB bird's-eye view.

    Args:
        points: (N, >=3) LiDAR points; a 4th column (reflectance in [0, 1]) sets the brightness.
        gt_boxes, pred_boxes: (M, >=7) LiDAR-frame boxes, or ``None``.
        pred_scores: (K,) scores of ``pred_boxes`` (brightness of their outlines), or ``None``.
        x_range, y_range: The area shown (metres), KITTI's point-cloud range by default.
        resolution: Metres per pixel.
    """
    if not (x_range[0] < x_range[1] and y_range[0] < y_range[1] and resolution > 0):
        raise ValueError(f"need increasing ranges and a positive resolution, got {x_range}, {y_range}, {resolution}")
    points = _numpy("points", points, 3)
    height = round((x_range[1] - x_range[0]) / resolution)
    width = round((y_range[1] - y_range[0]) / resolution)
    image = np.zeros((height, width, 3), np.uint8)

    def to_pixels(xy: np.ndarray) -> np.ndarray:
        rows = (x_range[1] - xy[..., 0]) / resolution
        cols = (y_range[1] - xy[..., 1]) / resolution
        return np.stack([cols, rows], -1)

    pixels = np.floor(to_pixels(points[:, :2])).astype(np.int64)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
    reflectance = np.clip(points[:, 3], 0.0, 1.0) if points.shape[1] > 3 else np.full(len(points), 0.5)
    image[pixels[inside, 1], pixels[inside, 0]] = (110 + 145 * reflectance[inside, None]).astype(np.uint8)
    for boxes, scores, colour in ((gt_boxes, None, _GT_COLOUR), (pred_boxes, pred_scores, _PRED_COLOUR)):
        if boxes is None:
            continue
        boxes = _numpy("boxes", boxes, 7)
        scores = np.ones(len(boxes)) if scores is None else _numpy("pred_scores", scores, None).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"`pred_scores` has {len(scores)} entries for {len(boxes)} boxes")
        _draw_boxes(image, to_pixels(bev_corners(boxes)), to_pixels(boxes[:, :2]), scores, colour)
    return image


def _draw_boxes(
    image: np.ndarray, corners: np.ndarray, centres: np.ndarray, scores: np.ndarray, colour: Sequence[int]
) -> None:
    for box, centre, score in zip(corners, centres, scores):
        shade = tuple(int(c * (0.4 + 0.6 * float(np.clip(score, 0.0, 1.0)))) for c in colour)
        polygon = np.round(box).astype(np.int32)
        cv2.polylines(image, [polygon], isClosed=True, color=shade, thickness=1, lineType=cv2.LINE_AA)
        front = np.round((box[0] + box[3]) / 2).astype(np.int32)
        cv2.line(image, tuple(np.round(centre).astype(np.int32)), tuple(front), shade, 1, cv2.LINE_AA)
