r"""KITTI D1 error: fraction of valid pixels whose disparity is wrong by more than 3 px *and* more than 5 %.

The KITTI 2015 stereo benchmark counts a pixel as an outlier when its error exceeds both an absolute and a relative
threshold (3 px and 5 % of the true disparity), so that distant points (small disparity) are judged by the absolute
and near points (large disparity) by the relative criterion:

.. math::
    \mathrm{D1} = \frac{|\{i \in V : |\hat d_i - d_i| > 3 \;\wedge\; |\hat d_i - d_i| > 0.05\,|d_i|\}|}{|V|}

The benchmark's D1-all is this over all valid pixels of ``disp_occ_0``; D1-bg / D1-fg restrict ``valid`` with the
``obj_map`` foreground mask. The value is a *fraction* in [0, 1] (the leaderboard prints percent).

A pixel with a non-finite error at a valid position counts as an outlier, never as correct.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_hpml.metrics._checks import _abs_error, _check_positive_threshold, _rate_compute, _resolve_valid

__all__ = ["D1Error", "d1_error"]


def _d1_update(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    abs_threshold: float = 3.0,
    rel_threshold: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """Return (number of valid D1 outliers, number of valid pixels), both int64."""
    mask = _resolve_valid(pred, target, valid)
    err = _abs_error(pred, target)
    # ``err > rel * |d|`` instead of ``err / |d| > rel``: same set for finite d, no division by a zero disparity.
    within = (err <= abs_threshold) | (err <= rel_threshold * target.to(err.dtype).abs())
    outlier = ~(within & torch.isfinite(err)) & mask
    return outlier.sum(dtype=torch.int64), mask.sum(dtype=torch.int64)


def _d1_compute(outliers: Tensor, total: Tensor) -> Tensor:
    """Return ``outliers / total`` (default float dtype), ``nan`` when ``total == 0``."""
    return _rate_compute(outliers, total)


def d1_error(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    abs_threshold: float = 3.0,
    rel_threshold: float = 0.05,
) -> Tensor:
    r"""KITTI D1: fraction in [0, 1] of valid pixels with :math:`|e| > 3` px and :math:`|e| > 5\%\,|d|`.

    Args:
        pred: Predicted disparity in pixels, shape ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``.
        target: Ground-truth disparity, same shape as ``pred``.
        valid: Boolean mask of pixels to evaluate, same shape. ``None`` means every pixel with a finite target
            (for KITTI pass ``target > 0``: its PNGs store 0 for "no ground truth").
        abs_threshold: Absolute error threshold in pixels (> 0); KITTI uses 3.
        rel_threshold: Relative error threshold as a fraction of the true disparity (> 0); KITTI uses 0.05.

    Returns:
        A scalar tensor (default float dtype) in [0, 1]; ``nan`` when there is no valid pixel.

    Raises:
        TypeError: If ``valid`` is not a boolean tensor, an input is not a real tensor, or a threshold is not a
            number.
        ValueError: If the shapes differ or are not accepted layouts, or a threshold is ``<= 0``.

    Example:
        >>> import torch
        >>> target = torch.tensor([[10.0, 10.0], [100.0, 100.0]])
        >>> pred = torch.tensor([[14.0, 12.0], [104.0, 106.0]])  # errors 4, 2, 4, 6
        >>> d1_error(pred, target)  # 4 > 3 and 4 > 0.5; 2 <= 3; 4 <= 5; 6 > 3 and 6 > 5
        tensor(0.5000)
    """
    abs_threshold = _check_positive_threshold("abs_threshold", abs_threshold)
    rel_threshold = _check_positive_threshold("rel_threshold", rel_threshold)
    return _d1_compute(*_d1_update(pred, target, valid, abs_threshold, rel_threshold))


class D1Error(Metric):
    r"""KITTI D1 outlier rate accumulated over batches and processes.

    Keeps integer counts of outliers and valid pixels (``sum``-reduced across processes) and divides in ``compute``,
    so the DDP value is the rate over the union of pixels.

    Note:
        Two ``D1Error`` instances with different thresholds have identically named states; put them in a
        :class:`torchmetrics.MetricCollection` with ``compute_groups=False`` (see
        :class:`~lightning_hpml.metrics.BadPixelRate` for why).

    Args:
        abs_threshold: Absolute error threshold in pixels (> 0).
        rel_threshold: Relative error threshold as a fraction of the true disparity (> 0).
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = D1Error()
        >>> metric.update(torch.tensor([[14.0]]), torch.tensor([[10.0]]))  # outlier
        >>> metric.update(torch.tensor([[104.0, 50.0, 0.0]]), torch.tensor([[100.0, 50.0, 80.0]]))  # 1 outlier of 3
        >>> metric.compute()
        tensor(0.5000)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    outliers: Tensor
    total: Tensor

    def __init__(self, abs_threshold: float = 3.0, rel_threshold: float = 0.05, **kwargs: Any) -> None:
        abs_threshold = _check_positive_threshold("abs_threshold", abs_threshold)
        rel_threshold = _check_positive_threshold("rel_threshold", rel_threshold)
        super().__init__(**kwargs)
        self.abs_threshold = abs_threshold
        self.rel_threshold = rel_threshold
        self.add_state("outliers", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add one batch; see :func:`d1_error` for the inputs."""
        outliers, total = _d1_update(pred, target, valid, self.abs_threshold, self.rel_threshold)
        self.outliers = self.outliers + outliers  # out of place: states reset under inference_mode stay usable
        self.total = self.total + total  # out of place: states reset under inference_mode stay usable

    def compute(self) -> Tensor:
        """Return the D1 rate over all accumulated valid pixels, ``nan`` if there were none."""
        return _d1_compute(self.outliers, self.total)
