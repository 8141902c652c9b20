"""Umeyama Sim(3) alignment and pose errors on poses with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from lightning_hpml.metrics.camera_pose import (
    apply_similarity,
    camera_pose_errors,
    rotation_angle_deg,
    umeyama_alignment,
)


def _poses(n: int = 7, seed: int = 0) -> torch.Tensor:
    rotations = torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())
    poses = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return poses


def test_umeyama_recovers_a_known_similarity_exactly():
    points = torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rotation = torch.from_numpy(Rotation.from_euler("zyx", [40, -25, 70], degrees=True).as_matrix())
    scale, offset = 2.7, torch.tensor([0.3, -1.2, 5.0], dtype=torch.float64)
    moved = scale * points @ rotation.T + offset
    s, r, t = umeyama_alignment(points, moved)
    assert float(s) == pytest.approx(scale, abs=1e-10)
    torch.testing.assert_close(r, rotation, atol=1e-10, rtol=0)
    torch.testing.assert_close(t, offset, atol=1e-10, rtol=0)
    # A reflection is never returned, even for a mirrored point set.
    _, r_mirror, _ = umeyama_alignment(points, points * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.det(r_mirror) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="N >= 3"):
        umeyama_alignment(points[:2], moved[:2])


def test_pose_errors_are_zero_for_a_similar_copy_and_measure_a_known_rotation():
    truth = _poses()
    rotation = torch.from_numpy(Rotation.from_rotvec([0.2, -0.5, 0.9]).as_matrix())
    predicted = apply_similarity(truth, torch.tensor(0.4, dtype=torch.float64), rotation, torch.tensor([1.0, 2, 3]))
    errors = camera_pose_errors(predicted, truth)
    assert errors["rotation_deg"] < 1e-6 and errors["translation"] < 1e-9
    assert float(errors["scale"]) == pytest.approx(1 / 0.4)
    tilted = predicted.clone()
    tilted[3, :3, :3] = tilted[3, :3, :3] @ torch.from_numpy(Rotation.from_rotvec([0, 0, math.radians(6)]).as_matrix())
    errors = camera_pose_errors(tilted, truth)
    assert float(errors["rotation_deg_each"][3]) == pytest.approx(6.0, abs=1e-6)
    assert errors["rotation_deg"] == pytest.approx(6.0 / 7, abs=1e-6)
    assert float(rotation_angle_deg(truth[:1, :3, :3], truth[:1, :3, :3])[0]) == pytest.approx(0.0, abs=1e-5)
