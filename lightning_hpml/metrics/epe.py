r"""End-point error (EPE): mean absolute disparity error over valid pixels.

For disparity (a 1-D flow along the epipolar line) the end-point error of a pixel is :math:`|\hat d - d|`, and the
metric is the mean over the valid pixels of the whole evaluation set:

.. math::
    \mathrm{EPE} = \frac{\sum_{i \in V} |\hat d_i - d_i|}{|V|}

The class keeps the *sum* of errors and the *count* of valid pixels (both reduced with ``sum`` across processes), so
the value under DDP is the mean over the union of all pixels, not a mean of per-process or per-image means.
Note that some official code bases (FADNet++, EASNet) report the mean of *per-image* EPEs instead; on data sets with
a varying number of valid pixels per image (KITTI) the two differ.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_hpml.metrics._checks import _abs_error, _resolve_valid

__all__ = ["EndPointError", "end_point_error"]


def _epe_update(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Return the sum of absolute errors over valid pixels (float64) and the number of valid pixels (int64).

    A non-finite prediction or target at a valid pixel makes the sum non-finite on purpose: it is reported, not
    dropped. The sum stays differentiable with respect to ``pred``.
    """
    mask = _resolve_valid(pred, target, valid)
    err_sum = _abs_error(pred, target)[mask].sum(dtype=torch.float64)
    return err_sum, mask.sum(dtype=torch.int64)


def _epe_compute(err_sum: Tensor, count: Tensor) -> Tensor:
    """Return ``err_sum / count`` in the default float dtype; NaN when no valid pixel was seen (``count == 0``)."""
    epe = err_sum / count.to(err_sum.dtype)
    epe = torch.where(count > 0, epe, torch.full_like(epe, math.nan))
    return epe.to(torch.get_default_dtype())


def end_point_error(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""Mean absolute disparity error :math:`\frac{1}{|V|}\sum_{i\in V}|\hat d_i - d_i|` over valid pixels.

    Args:
        pred: Predicted disparity in pixels, shape ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``.
        target: Ground-truth disparity, same shape as ``pred``.
        valid: Boolean mask of pixels to evaluate, same shape. ``None`` means every pixel with a finite target.

    Returns:
        A scalar tensor (default float dtype). ``nan`` when there is no valid pixel: an undefined mean is reported
        as such rather than as a flattering 0.

    Raises:
        TypeError: If ``valid`` is not a boolean tensor or an input is not a real tensor.
        ValueError: If the shapes differ or are not one of the accepted layouts.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[1.0, 2.0], [3.0, 8.0]])
        >>> target = torch.tensor([[1.5, 2.0], [4.0, 0.0]])
        >>> valid = torch.tensor([[True, True], [True, False]])
        >>> end_point_error(pred, target, valid)
        tensor(0.5000)
        >>> end_point_error(pred, target)  # no mask: every finite target counts
        tensor(2.3750)
        >>> end_point_error(pred, target, torch.zeros(2, 2, dtype=torch.bool))
        tensor(nan)
    """
    return _epe_compute(*_epe_update(pred, target, valid))


class EndPointError(Metric):
    r"""End-point error accumulated over batches (and processes): :math:`\sum |\hat d - d| \,/\, |V|`.

    ``update(pred, target, valid=None)`` takes the same inputs as :func:`end_point_error`; ``compute()`` returns the
    mean over every valid pixel seen since the last ``reset()`` (on all processes), or ``nan`` if none was seen.

    Args:
        kwargs: Passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Example:
        >>> import torch
        >>> metric = EndPointError()
        >>> metric.update(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0]]))  # 2 pixels, errors 1 and 0
        >>> metric.update(torch.tensor([[4.0]]), torch.tensor([[0.0]]))  # 1 pixel, error 4
        >>> metric.compute()  # (1 + 0 + 4) / 3, not the mean of the batch means (0.5 + 4) / 2
        tensor(1.6667)
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    err_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("err_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add one batch; see :func:`end_point_error` for the inputs."""
        err_sum, count = _epe_update(pred, target, valid)
        self.err_sum = self.err_sum + err_sum  # out of place: states reset under inference_mode stay usable
        self.count = self.count + count  # out of place: states reset under inference_mode stay usable

    def compute(self) -> Tensor:
        """Return the EPE over all accumulated valid pixels, ``nan`` if there were none."""
        return _epe_compute(self.err_sum, self.count)
