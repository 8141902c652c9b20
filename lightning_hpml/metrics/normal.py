r"""Surface-normal angular error: mean and median angle (degrees) and the share of pixels within 11.25/22.5/30 deg.

For each valid pixel both normals are L2-normalised and the angle between them is

.. math::
    \theta = \arccos\big(\mathrm{clamp}(\hat n \cdot n, -1, 1)\big) \cdot 180 / \pi,

which equals the official IRS metric :math:`\arccos(1 - \|\hat n - n\|^2 / 2)` (``losses/normalloss.py``) for unit
vectors, since :math:`\|\hat n - n\|^2 = 2 - 2\,\hat n \cdot n`. Valid pixels are those of the ``valid`` mask
(the IRS loader's ``normal_valid``); with ``valid=None``, pixels whose three target components are finite and in
[-1, 1] (the official test).

:class:`NormalAngleError` keeps only sums and counts reduced with ``sum`` across processes (DDP-correct): the sum of
angles, the number of pixels, the counts under each threshold, and a histogram of angles with bins of
``median_bin_deg`` (0.01 deg by default, 18,000 bins) from which the median is read by linear interpolation inside
the bin holding the middle pixel. The median is therefore exact to within one bin width; a ``cat`` state would be
exact but grows with the number of pixels (hundreds of millions on the IRS test set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["NORMAL_THRESHOLDS_DEG", "NormalAngleError", "normal_angle_error", "normal_angles"]

NORMAL_THRESHOLDS_DEG = (11.25, 22.5, 30.0)
"""Angle thresholds (degrees) of the "% of pixels within" figures customary for surface normals."""


def _threshold_name(threshold: float) -> str:
    """``11.25 -> 'normal_within_11_25'``, ``30.0 -> 'normal_within_30'``."""
    text = f"{threshold:g}".replace(".", "_")
    return f"normal_within_{text}"


def _check_normals(pred: Tensor, target: Tensor, valid: Tensor | None) -> Tensor:
    """Check shapes and return the ``(B, H, W)`` bool mask of pixels that count."""
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"`{name}` must have shape (B, 3, H, W), got {tuple(x.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if valid is None:
        return (torch.isfinite(target) & (target.abs() <= 1.0)).all(dim=1)
    if not isinstance(valid, Tensor) or valid.dtype != torch.bool:
        raise TypeError(f"`valid` must be a bool tensor or None, got {getattr(valid, 'dtype', type(valid).__name__)}")
    mask = valid[:, 0] if valid.ndim == 4 and valid.shape[1] == 1 else valid
    if mask.shape != (pred.shape[0], *pred.shape[2:]):
        raise ValueError(
            f"`valid` must have shape (B, 1, H, W) or (B, H, W) matching pred {tuple(pred.shape)}, got "
            f"{tuple(valid.shape)}"
        )
    return mask


def normal_angles(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Angles in degrees (float32, 1-D) between ``pred`` and ``target`` at the valid pixels.

    Args:
        pred: Predicted normals ``(B, 3, H, W)`` (normalised here).
        target: Ground-truth normals, same shape.
        valid: Bool ``(B, 1, H, W)`` or ``(B, H, W)``; ``None``: target components finite and in [-1, 1].
    """
    mask = _check_normals(pred, target, valid)
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    p = pred.to(dtype).permute(0, 2, 3, 1)[mask]
    t = target.to(dtype).permute(0, 2, 3, 1)[mask]
    p = p / torch.linalg.vector_norm(p, dim=-1, keepdim=True).clamp_min(1e-12)
    t = t / torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (p * t).sum(dim=-1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))


def normal_angle_error(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean angular error in degrees over the valid pixels (``nan`` when there is none).

    Example:
        >>> import torch
        >>> target = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 1, 2)
        >>> pred = torch.tensor([[0.0, 1.0], [0.0, 0.0], [-1.0, 0.0]]).view(1, 3, 1, 2)
        >>> normal_angle_error(pred, target)  # 0 and 90 degrees
        tensor(45.)
    """
    angles = normal_angles(pred, target, valid)
    if angles.numel() == 0:
        return torch.tensor(math.nan)
    return angles.mean().to(torch.get_default_dtype())


class NormalAngleError(Metric):
    """Normal angular error accumulated over batches and processes.

    ``update(pred, target, valid=None)`` as :func:`normal_angles`. ``compute()`` returns a dict:
    ``normal_mean_deg``, ``normal_median_deg`` and ``normal_within_<t>`` (fraction in [0, 1] of pixels with an
    angle below ``t`` degrees, e.g. ``normal_within_11_25``), ``nan`` values when no valid pixel was seen.

    Args:
        thresholds: Angle thresholds in degrees.
        median_bin_deg: Histogram bin width for the median (its precision).
        kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    angle_sum: Tensor
    count: Tensor
    within: Tensor
    histogram: Tensor

    def __init__(
        self, thresholds: Sequence[float] = NORMAL_THRESHOLDS_DEG, median_bin_deg: float = 0.01, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds or not all(0 < t <= 180 for t in thresholds):
            raise ValueError(f"`thresholds` must be angles in (0, 180] degrees, got {thresholds!r}")
        if not 0 < median_bin_deg <= 1:
            raise ValueError(f"`median_bin_deg` must be in (0, 1] degrees, got {median_bin_deg!r}")
        self.thresholds = thresholds
        self.median_bin_deg = float(median_bin_deg)
        self.num_bins = math.ceil(180.0 / self.median_bin_deg)
        self.add_state("angle_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("within", default=torch.zeros(len(thresholds), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("histogram", default=torch.zeros(self.num_bins, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add one batch of normals."""
        angles = normal_angles(pred.detach(), target, valid)
        limits = torch.tensor(self.thresholds, dtype=angles.dtype, device=angles.device)
        bins = (angles / self.median_bin_deg).long().clamp(0, self.num_bins - 1)
        self.angle_sum = self.angle_sum + angles.sum(dtype=torch.float64)
        self.count = self.count + angles.numel()
        self.within = self.within + (angles[:, None] < limits).sum(dim=0)
        self.histogram = self.histogram + torch.bincount(bins, minlength=self.num_bins)

    def _median(self) -> Tensor:
        half = self.count.to(torch.float64) / 2.0
        cumulative = self.histogram.cumsum(0).to(torch.float64)
        k = int(torch.searchsorted(cumulative, half.unsqueeze(0)).item())
        k = min(k, self.num_bins - 1)
        before = cumulative[k - 1] if k > 0 else cumulative.new_zeros(())
        in_bin = self.histogram[k].to(torch.float64).clamp_min(1.0)
        return (k + (half - before) / in_bin) * self.median_bin_deg

    def compute(self) -> dict[str, Tensor]:
        """Mean and median angle (degrees) and the within-threshold fractions."""
        dtype = torch.get_default_dtype()
        if int(self.count) == 0:
            nan = torch.tensor(math.nan, dtype=dtype)
            return {"normal_mean_deg": nan, "normal_median_deg": nan} | {
                _threshold_name(t): nan for t in self.thresholds
            }
        total = self.count.to(torch.float64)
        out = {
            "normal_mean_deg": (self.angle_sum / total).to(dtype),
            "normal_median_deg": self._median().to(dtype),
        }
        for i, t in enumerate(self.thresholds):
            out[_threshold_name(t)] = (self.within[i].to(torch.float64) / total).to(dtype)
        return out
