"""Metrics as :class:`torchmetrics.Metric` subclasses, each with a functional twin.

Stereo disparity: :class:`EndPointError` / :func:`end_point_error` (pixels), :class:`BadPixelRate` /
:func:`bad_pixel_rate` and :class:`D1Error` / :func:`d1_error` (fractions in [0, 1]), and
:func:`stereo_metric_collection`, the set a stereo LightningModule logs as ``val/epe``, ``val/d1_all``,
``val/bad_1px`` ... All keep sums and counts reduced with ``sum`` across processes, so values under DDP are over the
union of pixels.

Depth: :class:`DepthMetrics` (monocular / panorama: AbsRel, RMSE, deltas) and :class:`MVSDepthMetrics` (multi-view
stereo: mean absolute error and % of pixels within thresholds).

LiDAR detection: :class:`KITTIDetectionAP` (the KITTI benchmark's 2D / BEV / 3D AP_R40 and AP_R11 and AOS, with its
difficulty and don't-care rules) over exact rotated IoUs (:mod:`lightning_hpml.metrics.rotated_iou`);
:class:`~lightning_hpml.metrics.nuscenes_detection.NuScenesDetectionMetric` (mAP, NDS through nuscenes-devkit, imported
from its module so that the devkit stays optional).
"""

from __future__ import annotations

from lightning_hpml.metrics.bad_pixel import BadPixelRate, bad_pixel_rate
from lightning_hpml.metrics.d1 import D1Error, d1_error
from lightning_hpml.metrics.depth import DEPTH_METRIC_NAMES, DepthMetrics, depth_metrics
from lightning_hpml.metrics.epe import EndPointError, end_point_error
from lightning_hpml.metrics.kitti_detection import KITTIDetectionAP, kitti_detection_ap
from lightning_hpml.metrics.mvs_depth import MVSDepthMetrics
from lightning_hpml.metrics.normal import NormalAngleError, normal_angle_error, normal_angles
from lightning_hpml.metrics.stereo import bad_pixel_metric_name, stereo_metric_collection

__all__ = [
    "DEPTH_METRIC_NAMES",
    "BadPixelRate",
    "D1Error",
    "DepthMetrics",
    "EndPointError",
    "KITTIDetectionAP",
    "MVSDepthMetrics",
    "NormalAngleError",
    "bad_pixel_metric_name",
    "bad_pixel_rate",
    "d1_error",
    "depth_metrics",
    "end_point_error",
    "kitti_detection_ap",
    "normal_angle_error",
    "normal_angles",
    "stereo_metric_collection",
]
