"""Depth metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_hpml.metrics.depth import DEPTH_METRIC_NAMES, DepthMetrics, depth_metrics


def test_hand_computed_values_for_one_image():
    target = torch.tensor([[[2.0, 4.0, 1.0, 5.0]]])
    pred = torch.tensor([[[1.0, 4.0, 1.3, 9.0]]])
    valid = torch.tensor([[[True, True, True, False]]])
    m = depth_metrics(pred, target, valid)
    # valid pixels: (1 vs 2), (4 vs 4), (1.3 vs 1)
    assert float(m["abs_rel"]) == pytest.approx((0.5 + 0 + 0.3) / 3)
    assert float(m["sq_rel"]) == pytest.approx((1 / 2 + 0 + 0.09 / 1) / 3)
    assert float(m["rmse"]) == pytest.approx(math.sqrt((1 + 0 + 0.09) / 3))
    assert float(m["rmse_log"]) == pytest.approx(math.sqrt((math.log(0.5) ** 2 + 0 + math.log(1.3) ** 2) / 3))
    # ratios 2, 1, 1.3: < 1.25 -> 1 of 3; < 1.5625 -> 2; < 1.953 -> 2
    assert [float(m[k]) for k in ("delta1", "delta2", "delta3")] == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_metric_class_averages_per_image_and_skips_empty_images():
    a_pred, a_gt = torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 1.0)  # abs_rel 1
    b_pred, b_gt = torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 4, 4), 1.0)  # abs_rel 0, 16 pixels
    metric = DepthMetrics()
    metric.update(a_pred, a_gt, torch.ones_like(a_gt, dtype=torch.bool))
    metric.update(b_pred, b_gt, torch.ones_like(b_gt, dtype=torch.bool))
    metric.update(b_pred, b_gt, torch.zeros_like(b_gt, dtype=torch.bool))  # no valid pixel: skipped, not zero
    out = metric.compute()
    assert set(out) == set(DEPTH_METRIC_NAMES)
    assert float(out["abs_rel"]) == pytest.approx(0.5)  # mean of per-image values, not pixel-weighted (1/5)
    assert int(metric.skipped_images) == 1


def test_clamping_and_input_checks():
    gt = torch.tensor([[[20.0, 0.05]]])
    pred = torch.tensor([[[10.0, 0.1]]])
    m = depth_metrics(pred, gt, torch.ones(1, 1, 2, dtype=torch.bool))
    assert float(m["abs_rel"]) == pytest.approx(0.0, abs=1e-7)  # both clamped into [0.1, 10]
    with pytest.raises(TypeError, match="boolean"):
        depth_metrics(pred, gt, torch.ones(1, 1, 2))
    with pytest.raises(ValueError, match="same shape"):
        depth_metrics(pred, gt[..., :1], torch.ones(1, 1, 1, dtype=torch.bool))
    assert math.isnan(float(DepthMetrics().compute()["rmse"]))
