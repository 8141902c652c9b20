"""Per-view depth-map metrics of multi-view stereo: mean absolute error and the share of pixels within thresholds.

DispMVS (``eval.py``) and the MVSNet family report, over the valid ground-truth pixels of each reference view, the mean
absolute depth error and the percentage of pixels whose error is below 1, 2 and 4 mm on DTU (thresholds in the
scene's depth unit). Values are computed per view and averaged over views; views without a valid pixel are skipped
and counted in ``skipped_images``. Sums are reduced with ``sum`` across processes, so DDP gives the same mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_hpml.metrics.depth import check_depth_inputs

__all__ = ["MVSDepthMetrics"]


class MVSDepthMetrics(Metric):
    """``compute()`` returns ``abs_err`` and ``within_<t>`` (percent, one per threshold, e.g. ``within_2``).

    Args:
        thresholds: Error thresholds in depth units (DTU: 1, 2, 4 mm).

    Example:
        >>> import torch
        >>> metric = MVSDepthMetrics(thresholds=(1.0, 2.0))
        >>> pred, target = torch.tensor([[[10.0, 13.0]]]), torch.tensor([[[10.5, 11.0]]])
        >>> metric.update(pred, target, torch.ones(1, 1, 2, dtype=torch.bool))
        >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
        {'abs_err': 1.25, 'within_1': 50.0, 'within_2': 50.0}
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, thresholds: Sequence[float] = (1.0, 2.0, 4.0), **kwargs) -> None:
        super().__init__(**kwargs)
        if not thresholds or any(t <= 0 for t in thresholds):
            raise ValueError(f"`thresholds` must be positive numbers, got {thresholds!r}")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.names = ("abs_err", *(f"within_{t:g}" for t in self.thresholds))
        self.add_state("sums", torch.zeros(len(self.names), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("skipped_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor) -> None:
        check_depth_inputs(pred, target, valid)
        batch = pred.shape[0]
        mask = valid.reshape(batch, -1) & torch.isfinite(target.reshape(batch, -1))
        error = (pred.detach().reshape(batch, -1).double() - target.reshape(batch, -1).double()).abs()
        error = torch.where(mask, error, torch.zeros_like(error))
        count = mask.sum(1)
        has_pixels = count > 0
        n = count.clamp_min(1).double()
        values = [error.sum(1) / n, *(100.0 * ((error < t) & mask).sum(1) / n for t in self.thresholds)]
        # Out-of-place: states reset under ``torch.inference_mode`` (Lightning's evaluation) stay usable outside it.
        self.sums = self.sums + torch.stack(values, 1)[has_pixels].sum(0)
        self.images = self.images + int(has_pixels.sum())
        self.skipped_images = self.skipped_images + int((~has_pixels).sum())

    def compute(self) -> dict[str, Tensor]:
        mean = self.sums / self.images if self.images > 0 else torch.full_like(self.sums, math.nan)
        return {name: mean[i].float() for i, name in enumerate(self.names)}
