"""The standard set of stereo disparity metrics as one :class:`torchmetrics.MetricCollection`.

A LightningModule builds it once per stage and logs it under the stage prefix::

    self.val_metrics = stereo_metric_collection(prefix="val/")
    ...
    self.val_metrics.update(pred, batch["disparity"], batch["valid"])
    ...
    self.log_dict(self.val_metrics.compute())  # val/epe, val/d1_all, val/bad_1px, val/bad_2px, val/bad_3px

The collection is built with ``compute_groups=False``. torchmetrics' compute groups merge metrics whose states are
equal after the first update; the bad-pixel rates at different thresholds share state names, so a first batch in
which they happen to agree (a perfect prediction, or no valid pixel) would make every ``bad_*px`` report the same
number for the rest of the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchmetrics import Metric, MetricCollection

from lightning_hpml.metrics._checks import _check_positive_threshold
from lightning_hpml.metrics.bad_pixel import BadPixelRate
from lightning_hpml.metrics.d1 import D1Error
from lightning_hpml.metrics.epe import EndPointError

__all__ = ["bad_pixel_metric_name", "stereo_metric_collection"]


def bad_pixel_metric_name(threshold: float) -> str:
    """Return the collection key for a bad-pixel threshold: ``3.0 -> "bad_3px"``, ``0.5 -> "bad_0p5px"``.

    Why ``p`` for the decimal point: ``torch.nn.ModuleDict`` (under ``MetricCollection``) refuses keys with dots.

    Example:
        >>> bad_pixel_metric_name(3.0), bad_pixel_metric_name(0.5)
        ('bad_3px', 'bad_0p5px')
    """
    threshold = _check_positive_threshold("threshold", threshold)
    return f"bad_{threshold:g}px".replace(".", "p")


def stereo_metric_collection(
    prefix: str | None = None,
    postfix: str | None = None,
    bad_pixel_thresholds: Sequence[float] = (1.0, 2.0, 3.0),
    d1_abs_threshold: float = 3.0,
    d1_rel_threshold: float = 0.05,
    **metric_kwargs: Any,
) -> MetricCollection:
    """Build EPE, KITTI D1 and bad-pixel rates as one collection with keys ``epe``, ``d1_all``, ``bad_<k>px``.

    All rates are fractions in [0, 1]; EPE is in pixels. Every metric takes ``update(pred, target, valid=None)``.

    Args:
        prefix: Prepended to every key, e.g. ``"val/"``.
        postfix: Appended to every key.
        bad_pixel_thresholds: Thresholds in pixels for the ``bad_<k>px`` rates (default 1, 2, 3).
        d1_abs_threshold: D1 absolute threshold in pixels.
        d1_rel_threshold: D1 relative threshold (fraction of the true disparity).
        metric_kwargs: Passed to every metric's constructor (:class:`torchmetrics.Metric` options such as
            ``sync_on_compute=False`` for per-process values).

    Returns:
        A :class:`torchmetrics.MetricCollection` with ``compute_groups=False`` (see the module docstring).

    Raises:
        ValueError: If a threshold is ``<= 0`` or two thresholds give the same key.

    Example:
        >>> import torch
        >>> metrics = stereo_metric_collection(prefix="val/")
        >>> target = torch.full((1, 1, 2, 2), 10.0)
        >>> pred = target + torch.tensor([0.5, 1.5, 2.5, 3.5]).reshape(1, 1, 2, 2)
        >>> metrics.update(pred, target, target > 0)
        >>> {name: round(value.item(), 4) for name, value in sorted(metrics.compute().items())}
        {'val/bad_1px': 0.75, 'val/bad_2px': 0.5, 'val/bad_3px': 0.25, 'val/d1_all': 0.25, 'val/epe': 2.0}
    """
    metrics: dict[str, Metric] = {
        "epe": EndPointError(**metric_kwargs),
        "d1_all": D1Error(abs_threshold=d1_abs_threshold, rel_threshold=d1_rel_threshold, **metric_kwargs),
    }
    for threshold in bad_pixel_thresholds:
        name = bad_pixel_metric_name(threshold)
        if name in metrics:
            raise ValueError(
                f"`bad_pixel_thresholds` gives the key {name!r} twice; got thresholds {tuple(bad_pixel_thresholds)!r}"
            )
        metrics[name] = BadPixelRate(threshold=threshold, **metric_kwargs)
    return MetricCollection(metrics, prefix=prefix, postfix=postfix, compute_groups=False)
