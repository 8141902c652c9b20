"""DTU-style point-cloud accuracy and completeness, with open3d nearest neighbours.

Follows the official DTU MATLAB evaluation (``BaseEvalMain_web.m`` / ``PointCompareMain.m`` as shipped with
MVSNet_pytorch and DispMVS): the reconstruction is thinned to a minimum point spacing (0.2 mm), then

- **accuracy** = mean distance from each reconstructed point (inside the observation mask, if given) to the nearest
  ground-truth point, ignoring distances ``>= max_dist`` (20 mm, outliers);
- **completeness** = mean distance from each ground-truth point (above the ground plane / inside the given mask) to
  the nearest reconstructed point, ignoring distances ``>= max_dist``;
- **overall** = their mean. Units are those of the points (mm on DTU); lower is better.

Differences from the MATLAB code: thinning uses open3d's voxel down-sampling (one point per ``spacing`` voxel)
instead of the random minimum-distance reduction, and the observation mask / ground plane are passed as boolean
masks (or callables on points) rather than read from DTU's ``ObsMask*.mat`` / ``Plane*.mat`` files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import open3d as o3d

__all__ = ["dtu_accuracy_completeness"]

PointMask = np.ndarray | Callable[[np.ndarray], np.ndarray] | None


def _cloud(points) -> o3d.geometry.PointCloud:
    if isinstance(points, o3d.geometry.PointCloud):
        return points
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {array.shape}")
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(array))


def _mask(points: np.ndarray, mask: PointMask, name: str) -> np.ndarray:
    if mask is None:
        return np.ones(len(points), dtype=bool)
    keep = np.asarray(mask(points) if callable(mask) else mask, dtype=bool)
    if keep.shape != (len(points),):
        raise ValueError(f"`{name}` must give one bool per point ({len(points)}), got shape {keep.shape}")
    return keep


def dtu_accuracy_completeness(
    reconstruction,
    ground_truth,
    spacing: float | None = 0.2,
    max_dist: float = 20.0,
    observed: PointMask = None,
    gt_valid: PointMask = None,
) -> dict[str, float]:
    """Accuracy, completeness and overall of ``reconstruction`` against ``ground_truth`` (see the module docstring).

    Args:
        reconstruction, ground_truth: (N, 3) arrays or open3d point clouds.
        spacing: Minimum spacing the reconstruction is thinned to (``None``: no thinning).
        max_dist: Distances at or above this are outliers and left out of both means.
        observed: Mask (or function of the thinned reconstruction's points) of points inside the observation mask.
        gt_valid: Mask (or function of the ground-truth points) of points that count for completeness.

    Returns:
        ``accuracy``, ``completeness``, ``overall`` and the fractions of points left out as outliers.
    """
    recon = _cloud(reconstruction)
    gt = _cloud(ground_truth)
    if len(recon.points) == 0 or len(gt.points) == 0:
        raise ValueError("both point clouds must contain points")
    if spacing is not None:
        recon = recon.voxel_down_sample(spacing)
    recon_points, gt_points = np.asarray(recon.points), np.asarray(gt.points)
    keep_recon = _mask(recon_points, observed, "observed")
    keep_gt = _mask(gt_points, gt_valid, "gt_valid")
    to_gt = np.asarray(recon.compute_point_cloud_distance(gt))[keep_recon]
    to_recon = np.asarray(gt.compute_point_cloud_distance(recon))[keep_gt]
    acc_in, comp_in = to_gt[to_gt < max_dist], to_recon[to_recon < max_dist]
    accuracy = float(acc_in.mean()) if len(acc_in) else float("nan")
    completeness = float(comp_in.mean()) if len(comp_in) else float("nan")
    return {
        "accuracy": accuracy,
        "completeness": completeness,
        "overall": (accuracy + completeness) / 2,
        "accuracy_outlier_fraction": float(1 - len(acc_in) / max(len(to_gt), 1)),
        "completeness_outlier_fraction": float(1 - len(comp_in) / max(len(to_recon), 1)),
    }
