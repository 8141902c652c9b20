"""RIDE's rotation-invariant features: invariance to rotations about z, the exact formulas, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_hpml.modules.lidar.rotation_invariant import rotation_invariant_features


def rot_z(v: torch.Tensor, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    r = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=v.dtype)
    return v @ r.T


def test_invariant_to_rotation_about_z():
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(2, 7, 3, generator=g, dtype=torch.float64) * 40 - 20
    rel = torch.randn(2, 7, 16, 3, generator=g, dtype=torch.float64)
    feats = rotation_invariant_features(rel, centres)
    assert feats.shape == (2, 9, 7, 16)
    for angle in torch.empty(5).uniform_(-math.pi, math.pi, generator=g).tolist():
        rel_r, centres_r = rot_z(rel, angle), rot_z(centres, angle)
        assert (rel_r - rel).abs().max() > 1e-2  # the raw offsets do change
        torch.testing.assert_close(rotation_invariant_features(rel_r, centres_r), feats, atol=1e-5, rtol=0)


def test_formulas_for_one_group():
    rel = torch.tensor([[[[1.0, 0.0, 0.5], [0.0, 2.0, -0.5], [-1.0, 0.0, 0.0]]]], dtype=torch.float64)
    centre = torch.tensor([[[3.0, 4.0, 1.0]]], dtype=torch.float64)
    f = rotation_invariant_features(rel, centre)[0, :, 0]  # (9, k)
    q = rel[0, 0, :, :2]
    m = q.mean(0)
    prev = torch.roll(q, 1, 0)
    v = m - centre[0, 0, :2]
    u = v / v.norm()
    torch.testing.assert_close(f[0], (q - m).norm(dim=-1))
    torch.testing.assert_close(f[1], q.norm(dim=-1))
    torch.testing.assert_close(f[2], (q - prev).norm(dim=-1))
    torch.testing.assert_close(f[3], (prev - m).norm(dim=-1))
    torch.testing.assert_close(f[4], (prev - centre[0, 0, :2]).norm(dim=-1))
    torch.testing.assert_close(f[5], ((q - m) @ u) / (q - m).norm(dim=-1))
    torch.testing.assert_close(f[6], (q @ u) / q.norm(dim=-1))
    torch.testing.assert_close(f[7], ((prev - m) @ u) / (prev - m).norm(dim=-1))
    torch.testing.assert_close(f[8], rel[0, 0, :, 2])


def test_degenerate_group_is_finite():
    rel = torch.zeros(1, 2, 4, 3)  # all neighbours at the centre (e.g. an empty ball padded with one point)
    centre = torch.zeros(1, 2, 3)
    f = rotation_invariant_features(rel, centre)
    assert torch.isfinite(f).all() and f.abs().max() == 0


def test_bad_shapes():
    with pytest.raises(ValueError, match="`grouped_rel_xyz`"):
        rotation_invariant_features(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="`centres`"):
        rotation_invariant_features(torch.zeros(1, 2, 4, 3), torch.zeros(1, 3, 3))
