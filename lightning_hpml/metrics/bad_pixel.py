r"""Bad-pixel rate (">k px error"): fraction of valid pixels whose disparity error exceeds a threshold.

.. math::
    \mathrm{bad}_\tau = \frac{|\{i \in V : |\hat d_i - d_i| > \tau\}|}{|V|}

This is the "k-px error" / "Out-All" family: KITTI 2012 reports it at 2, 3, 4 and 5 px, FADNet's evaluation and
OpenStereo's ``thres_1/2/3`` at 1, 2 and 3 px. The value is a *fraction* in [0, 1] (log it as such, e.g.
``val/bad_3px``; multiply by 100 only when printing a table in percent).

A pixel with a non-finite error (NaN/inf prediction or target at a valid pixel) counts as bad: it is never quietly
treated as correct.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_hpml.metrics._checks import _abs_error, _check_positive_threshold, _rate_compute, _resolve_valid

__all__ = ["BadPixelRate", "bad_pixel_rate"]


def _bad_pixel_update(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, threshold: float = 3.0
) -> tuple[Tensor, Tensor]:
    """Return (number of valid pixels with error > ``threshold``, number of valid pixels), both int64."""
    mask = _resolve_valid(pred, target, valid)
    # ``~(err <= t)`` rather than ``err > t`` so that a NaN error counts as bad.
    bad = ~(_abs_error(pred, target) <= threshold) & mask
    return bad.sum(dtype=torch.int64), mask.sum(dtype=torch.int64)


def _bad_pixel_compute(bad: Tensor, total: Tensor) -> Tensor:
    """Return ``bad / total`` (default float dtype), ``nan`` when ``total == 0``."""
    return _rate_compute(bad, total)


def bad_pixel_rate(pred: Tensor, target: Tensor, valid: Tensor | None = None, threshold: float = 3.0) -> Tensor:
    r"""Fraction in [0, 1] of valid pixels with :math:`|\hat d - d| > \tau` (``threshold``, in pixels).

    Args:
        pred: Predicted disparity in pixels, shape ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``.
        target: Ground-truth disparity, same shape as ``pred``.
        valid: Boolean mask of pixels to evaluate, same shape. ``None`` means every pixel with a finite target.
        threshold: Error above which a pixel is bad, in pixels (> 0). An error exactly equal to it is not bad.

    Returns:
        A scalar tensor (default float dtype) in [0, 1]; ``nan`` when there is no valid pixel.

    Raises:
        TypeError: If ``valid`` is not a boolean tensor, an input is not a real tensor, or ``threshold`` is not a
            number.
        ValueError: If the shapes differ or are not accepted layouts, or ``threshold <= 0``.

    Example:
        >>> import torch
        >>> pred = torch.tensor([0.0, 1.0, 5.0, 10.0]).reshape(2, 2)
        >>> target = torch.zeros(2, 2)
        >>> bad_pixel_rate(pred, target, threshold=3.0)  # errors 0, 1, 5, 10
        tensor(0.5000)
        >>> bad_pixel_rate(pred, target, threshold=1.0)  # an error of exactly 1 px is not > 1 px
        tensor(0.5000)
        >>> bad_pixel_rate(pred, target, threshold=0.5)
        tensor(0.7500)
    """
    threshold = _check_positive_threshold("threshold", threshold)
    return _bad_pixel_compute(*_bad_pixel_update(pred, target, valid, threshold))


class BadPixelRate(Metric):
    r"""Bad-pixel rate (fraction of valid pixels with error :math:`> \tau` px) accumulated over batches and processes.

    Keeps integer counts of bad and valid pixels (``sum``-reduced across processes) and divides in ``compute``.

    Note:
        Several ``BadPixelRate`` instances (different thresholds) have identically named states. In a hand-built :class:`torchmetrics.MetricCollection`, pass ``compute_groups=False``: otherwise
        torchmetrics merges metrics whose states happen to be equal after the first batch (e.g. a perfect or an
        all-invalid first batch) and then reports one threshold's value for all of them.
        :func:`~lightning_hpml.metrics.stereo_metric_collection` does this for you.

    Args:
        threshold: Error above which a pixel is bad, in pixels (> 0).
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = BadPixelRate(threshold=3.0)
        >>> metric.update(torch.tensor([[0.0, 4.0]]), torch.zeros(1, 2))
        >>> metric.update(torch.tensor([[1.0, 1.0, 1.0]]), torch.zeros(1, 3))
        >>> metric.compute()  # 1 bad pixel out of 5
        tensor(0.2000)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    bad: Tensor
    total: Tensor

    def __init__(self, threshold: float = 3.0, **kwargs: Any) -> None:
        threshold = _check_positive_threshold("threshold", threshold)
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("bad", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add one batch; see :func:`bad_pixel_rate` for the inputs."""
        bad, total = _bad_pixel_update(pred, target, valid, self.threshold)
        self.bad = self.bad + bad  # out of place: states reset under inference_mode stay usable
        self.total = self.total + total  # out of place: states reset under inference_mode stay usable

    def compute(self) -> Tensor:
        """Return the bad-pixel fraction over all accumulated valid pixels, ``nan`` if there were none."""
        return _bad_pixel_compute(self.bad, self.total)
