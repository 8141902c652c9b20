"""Correlation, warping and the multi-scale loss schedule against direct references."""

from __future__ import annotations

import pytest
import torch

from lightning_hpml.modules.layers import channel_norm, correlation_1d, warp_right_to_left
from lightning_hpml.modules.stereo.losses import (
    FADNET_SCENEFLOW_ROUNDS,
    LossRound,
    MultiScaleDisparityLoss,
    pooled_target,
    round_at_epoch,
)


def reference_correlation(left, right, displacements):
    b, c, h, w = left.shape
    out = torch.zeros(b, displacements, h, w, dtype=left.dtype)
    for d in range(displacements):
        for x in range(d, w):
            out[:, d, :, x] = (left[:, :, :, x] * right[:, :, :, x - d]).sum(1) / c
    return out


def test_correlation_matches_pixel_loop():
    torch.manual_seed(0)
    left, right = torch.randn(2, 5, 3, 12), torch.randn(2, 5, 3, 12)
    torch.testing.assert_close(correlation_1d(left, right, 7), reference_correlation(left, right, 7))


def test_correlation_peaks_at_true_shift():
    torch.manual_seed(0)
    right = torch.randn(1, 16, 4, 40)
    left = torch.zeros_like(right)
    left[..., 5:] = right[..., :-5]  # left(x) = right(x - 5): disparity 5
    volume = correlation_1d(left, right, 10)
    assert (volume[0, :, :, 10:].argmax(0) == 5).all()


def test_warp_with_integer_disparity_is_exact_shift():
    right = torch.arange(2 * 3 * 4 * 10, dtype=torch.float32).view(2, 3, 4, 10)
    disp = torch.full((2, 1, 4, 10), 3.0)
    warped = warp_right_to_left(right, disp)
    torch.testing.assert_close(warped[..., 3:], right[..., :-3])
    torch.testing.assert_close(warped[..., :3], right[..., :1].expand(-1, -1, -1, 3))  # border clamp


def test_warp_half_pixel_is_linear_interpolation():
    right = torch.arange(10, dtype=torch.float32).view(1, 1, 1, 10).repeat(1, 1, 3, 1)
    warped = warp_right_to_left(right, torch.full((1, 1, 3, 10), 0.5))
    torch.testing.assert_close(warped[..., 1:], right[..., 1:] - 0.5)


def test_channel_norm_has_finite_gradient_at_zero():
    x = torch.zeros(1, 3, 2, 2, requires_grad=True)
    channel_norm(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_pooled_target_uses_valid_pixels_only():
    target = torch.tensor([[[[2.0, 4.0], [6.0, 100.0]]]])
    valid = torch.tensor([[[[True, True], [True, False]]]])
    pooled, mask = pooled_target(target, valid, 2)
    assert mask.all() and pooled.item() == pytest.approx(4.0)


def test_multiscale_loss_weights_and_masks():
    target = torch.full((1, 1, 8, 8), 4.0)
    valid = torch.ones_like(target, dtype=torch.bool)
    preds = [torch.full((1, 1, 8 // 2**k, 8 // 2**k), 4.0 + 2.0 * k) for k in range(3)]
    loss = MultiScaleDisparityLoss()(preds, target, valid, [1.0, 0.5, 0.25])
    # smooth L1 with beta 1: |e|=2 -> 1.5, |e|=4 -> 3.5
    assert loss.item() == pytest.approx(0.0 + 0.5 * 1.5 + 0.25 * 3.5)
    empty = MultiScaleDisparityLoss()(preds, target, torch.zeros_like(valid), [1.0, 0.5, 0.25])
    assert empty.item() == 0.0


def test_round_schedule_follows_official_sceneflow_config():
    rounds = FADNET_SCENEFLOW_ROUNDS
    assert [r.epochs for r in rounds] == [20, 20, 20, 30]
    assert round_at_epoch(rounds, 0) == (0, 0)
    assert round_at_epoch(rounds, 19) == (0, 19)
    assert round_at_epoch(rounds, 20) == (1, 0)
    assert round_at_epoch(rounds, 65) == (3, 5)
    assert round_at_epoch(rounds, 200) == (3, 140)  # the last round continues


def test_loss_round_validates():
    with pytest.raises(ValueError, match="epochs"):
        LossRound([1.0], 0)
    with pytest.raises(ValueError, match="weights"):
        LossRound([0.0, 0.0], 3)
