"""Normal angular error metrics on known answers, against an independent numpy reference, and split/merged states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_hpml.metrics import NormalAngleError, normal_angle_error, normal_angles


def _normals_at_angles(angles_deg: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets -z and predictions rotated by each angle about the y axis, shaped (1, 3, 1, N)."""
    a = torch.deg2rad(torch.tensor(angles_deg, dtype=torch.float64))
    pred = torch.stack((torch.sin(a), torch.zeros_like(a), -torch.cos(a))).view(1, 3, 1, -1)
    target = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).view(1, 3, 1, 1).expand_as(pred).clone()
    return pred, target


def test_known_angles_mean_median_and_thresholds():
    angles = [0.0, 10.0, 20.0, 25.0, 45.0, 90.0, 180.0]
    pred, target = _normals_at_angles(angles)
    torch.testing.assert_close(
        normal_angles(pred, target), torch.tensor(angles, dtype=torch.float64), atol=1e-6, rtol=0
    )
    metric = NormalAngleError()
    metric.update(pred.float() * 3.0, target.float())  # scale of the prediction does not matter
    out = metric.compute()
    assert out["normal_mean_deg"].item() == pytest.approx(sum(angles) / 7, abs=1e-4)
    assert out["normal_median_deg"].item() == pytest.approx(25.0, abs=0.01)
    assert out["normal_within_11_25"].item() == pytest.approx(2 / 7)
    assert out["normal_within_22_5"].item() == pytest.approx(3 / 7)
    assert out["normal_within_30"].item() == pytest.approx(4 / 7)


def test_matches_the_official_formula_on_random_normals():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(2, 3, 5, 7))
    target = rng.normal(size=(2, 3, 5, 7))
    p = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    t = target / np.linalg.norm(target, axis=1, keepdims=True)
    official = np.degrees(np.arccos(np.clip(1 - ((p - t) ** 2).sum(1) / 2, -1, 1)))  # acos(1 - ||d||^2 / 2)
    t_in_range = np.clip(target, -1, 1)  # so that every pixel is valid under the default rule
    ours = normal_angle_error(torch.from_numpy(pred), torch.from_numpy(t_in_range))
    ref = np.degrees(
        np.arccos(np.clip((p * (t_in_range / np.linalg.norm(t_in_range, axis=1, keepdims=True))).sum(1), -1, 1))
    )
    assert ours.item() == pytest.approx(ref.mean(), rel=1e-6)
    full = normal_angles(torch.from_numpy(pred), torch.from_numpy(target), torch.ones(2, 1, 5, 7, dtype=torch.bool))
    np.testing.assert_allclose(full.numpy(), official.reshape(-1), atol=1e-5)


def test_validity_mask_and_default_rule():
    pred, target = _normals_at_angles([10.0, 50.0, 80.0])
    valid = torch.tensor([True, False, True]).view(1, 1, 1, 3)
    assert normal_angle_error(pred, target, valid).item() == pytest.approx(45.0)
    target[0, 2, 0, 1] = -1.5  # out of [-1, 1]: invalid under the default (official) rule
    assert normal_angle_error(pred, target).item() == pytest.approx(45.0)
    assert math.isnan(normal_angle_error(pred, target, torch.zeros_like(valid)).item())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        normal_angles(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))
    with pytest.raises(TypeError, match="bool"):
        normal_angles(pred, target, valid.float())


def test_accumulation_equals_one_shot_and_median_is_within_a_bin():
    rng = np.random.default_rng(1)
    pred = torch.from_numpy(rng.normal(size=(4, 3, 6, 6))).float()
    target = torch.from_numpy(rng.normal(size=(4, 3, 6, 6))).float()
    valid = torch.ones(4, 1, 6, 6, dtype=torch.bool)
    whole, parts = NormalAngleError(), [NormalAngleError(), NormalAngleError()]
    whole.update(pred, target, valid)
    parts[0].update(pred[:1], target[:1], valid[:1])
    parts[1].update(pred[1:], target[1:], valid[1:])
    parts[0].merge_state(parts[1])  # what DDP's sum reduction does
    a, b = whole.compute(), parts[0].compute()
    for key in a:
        assert a[key].item() == pytest.approx(b[key].item(), abs=1e-6), key
    median = torch.median(normal_angles(pred, target, valid)).item()
    assert abs(a["normal_median_deg"].item() - median) <= 0.01
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = NormalAngleError().compute()
    assert all(math.isnan(v.item()) for v in empty.values())
