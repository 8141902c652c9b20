"""MVS depth metrics: per-view means averaged over views, thresholds in scene units, clear input errors."""

from __future__ import annotations

import doctest

import pytest
import torch

from lightning_hpml.metrics import MVSDepthMetrics, mvs_depth


def test_values_are_per_view_means_and_empty_views_are_skipped():
    metric = MVSDepthMetrics(thresholds=(1.0, 2.0, 4.0))
    target = torch.full((3, 1, 2, 2), 500.0)
    pred = target.clone()
    pred[0] += torch.tensor([[0.5, 1.5], [3.0, 10.0]])  # view 0: errors 0.5, 1.5, 3, 10
    pred[1, 0, 0, 0] += 8.0  # view 1: only this pixel is valid
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[1] = False
    valid[1, 0, 0, 0] = True
    valid[2] = False  # view 2: nothing valid -> skipped, not scored as perfect
    metric.update(pred, target, valid)
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result["abs_err"] == pytest.approx(((0.5 + 1.5 + 3 + 10) / 4 + 8) / 2)
    assert result["within_1"] == pytest.approx((25.0 + 0.0) / 2)
    assert result["within_2"] == pytest.approx((50.0 + 0.0) / 2)
    assert result["within_4"] == pytest.approx((75.0 + 0.0) / 2)
    assert int(metric.skipped_images) == 1


def test_bad_inputs_and_docstring_example():
    metric = MVSDepthMetrics()
    with pytest.raises(ValueError, match="same shape"):
        metric.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3), torch.ones(1, 1, 2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        metric.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="thresholds"):
        MVSDepthMetrics(thresholds=(0.0,))
    assert doctest.testmod(mvs_depth).failed == 0
