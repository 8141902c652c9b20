r"""Monocular / panorama depth metrics: AbsRel, SqRel, RMSE, RMSElog and the delta accuracies.

For each image, over its valid pixels :math:`V` (ground truth and prediction clamped to ``[min_depth, max_depth]``,
as UniFuse's evaluation does with 0.1 m and 10 m):

.. math::
    \mathrm{AbsRel} = \tfrac{1}{|V|}\sum \tfrac{|\hat d - d|}{d},\quad
    \mathrm{SqRel} = \tfrac{1}{|V|}\sum \tfrac{(\hat d - d)^2}{d},\quad
    \mathrm{RMSE} = \sqrt{\tfrac{1}{|V|}\sum (\hat d - d)^2},\quad
    \mathrm{RMSElog} = \sqrt{\tfrac{1}{|V|}\sum (\ln \hat d - \ln d)^2},\quad
    \delta_k = \tfrac{1}{|V|}\,\#\{\max(\hat d/d,\ d/\hat d) < 1.25^k\}

RMSElog uses the **natural** logarithm (Eigen et al.); UniFuse's code uses log10 for it, which is smaller by a factor
ln(10) = 2.303. Each metric is computed per image and then averaged over images (the panorama papers' convention);
sums of per-image values and the image count are reduced with ``sum`` across processes, so DDP gives the same mean.
Images without a valid pixel are skipped and counted in ``skipped_images``, never scored as zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["DEPTH_METRIC_NAMES", "DepthMetrics", "depth_metrics"]

#: Output keys, in reporting order.
DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


def check_depth_inputs(pred: Tensor, target: Tensor, valid: Tensor) -> None:
    """Raise a clear error unless ``pred``, ``target`` and boolean ``valid`` are same-shaped batches of depth maps."""
    if pred.shape != target.shape or valid.shape != target.shape:
        raise ValueError(
            f"`pred`, `target` and `valid` must have the same shape, got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}, {tuple(valid.shape)}"
        )
    if valid.dtype != torch.bool:
        raise TypeError(f"`valid` must be a boolean tensor, got dtype {valid.dtype}")
    if pred.ndim < 3:
        raise ValueError(f"expected a batch of depth maps (B, H, W) or (B, 1, H, W), got shape {tuple(pred.shape)}")


def _per_image(
    pred: Tensor, target: Tensor, valid: Tensor, min_depth: float, max_depth: float
) -> tuple[Tensor, Tensor]:
    """Per-image metric values ``(N, 7)`` for images with valid pixels, and the mask of those images ``(B,)``."""
    check_depth_inputs(pred, target, valid)
    batch = pred.shape[0]
    pred = pred.detach().reshape(batch, -1).double().clamp(min_depth, max_depth)
    target = target.reshape(batch, -1).double().clamp(min_depth, max_depth)
    mask = valid.reshape(batch, -1) & torch.isfinite(target)
    count = mask.sum(1)
    has_pixels = count > 0
    n = count.clamp_min(1).double()
    diff = (pred - target) * mask
    log_diff = (pred.log() - target.log()) * mask
    ratio = torch.maximum(pred / target, target / pred)
    values = [
        (diff.abs() / target).sum(1) / n,
        (diff.square() / target).sum(1) / n,
        (diff.square().sum(1) / n).sqrt(),
        (log_diff.square().sum(1) / n).sqrt(),
        *[((ratio < 1.25**k) & mask).sum(1) / n for k in (1, 2, 3)],
    ]
    return torch.stack(values, dim=1)[has_pixels], has_pixels


def depth_metrics(
    pred: Tensor, target: Tensor, valid: Tensor, min_depth: float = 0.1, max_depth: float = 10.0
) -> dict[str, Tensor]:
    """Mean over images of each metric in :data:`DEPTH_METRIC_NAMES` (NaN if no image has a valid pixel).

    Example:
        >>> import torch
        >>> target = torch.tensor([[[2.0, 4.0]]])
        >>> pred = torch.tensor([[[1.0, 4.0]]])
        >>> m = depth_metrics(pred, target, torch.ones(1, 1, 2, dtype=torch.bool))
        >>> round(float(m["abs_rel"]), 4), round(float(m["delta1"]), 4)
        (0.25, 0.5)
    """
    values, _ = _per_image(pred, target, valid, min_depth, max_depth)
    mean = values.mean(0) if len(values) else torch.full((len(DEPTH_METRIC_NAMES),), math.nan, dtype=torch.float64)
    return {name: mean[i].float() for i, name in enumerate(DEPTH_METRIC_NAMES)}


class DepthMetrics(Metric):
    """All depth metrics at once, accumulated over batches and processes (per-image means averaged over images).

    ``compute()`` returns a dict keyed by :data:`DEPTH_METRIC_NAMES` (log them with a ``test/`` or ``val/`` prefix).

    Args:
        min_depth, max_depth: Clamp range for prediction and ground truth, in metres (0.1 and 10 as UniFuse).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, min_depth: float = 0.1, max_depth: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.add_state("sums", torch.zeros(len(DEPTH_METRIC_NAMES), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("skipped_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor) -> None:
        values, has_pixels = _per_image(pred, target, valid, self.min_depth, self.max_depth)
        self.sums += values.sum(0)
        self.images += len(values)
        self.skipped_images += int((~has_pixels).sum())

    def compute(self) -> dict[str, Tensor]:
        mean = self.sums / self.images if self.images > 0 else torch.full_like(self.sums, math.nan)
        return {name: mean[i].float() for i, name in enumerate(DEPTH_METRIC_NAMES)}
