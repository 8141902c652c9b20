"""DispMVS: epipolar-flow geometry, building blocks, loss, and a short real training run that lowers depth error."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lightning_hpml.datamodules.mvs import DTUDataModule
from lightning_hpml.modules import create_model
from lightning_hpml.modules.layers.convex_upsampling import convex_upsample
from lightning_hpml.modules.layers.deformable_conv import DeformableConv2d
from lightning_hpml.modules.layers.epipolar import project, relative_pose
from lightning_hpml.modules.layers.epipolar_flow import EpipolarFlow, pixel_grid
from lightning_hpml.modules.mvs import DispMVS, DispMVSModule, dispmvs_loss
from lightning_hpml.modules.mvs.dispmvs import grid_intrinsics, normalised_inverse_depth
from tests.mvs.test_epipolar import _cameras


def _geometry(
    depth: torch.Tensor, features: torch.Tensor, levels: int = 1, radius: int = 2, cameras=None
) -> EpipolarFlow:
    k_ref, e_ref, k_src, e_src = (t.float() for t in (cameras or _cameras()))
    return EpipolarFlow(k_ref, e_ref, k_src, e_src, depth, features, levels, radius)


def _overlapping_cameras():
    """A 160x128 pair with a 0.5 baseline and a slight rotation: at depth 5 most pixels match inside the image."""
    k = torch.tensor([[[200.0, 0, 79.5], [0, 200, 63.5], [0, 0, 1]]])
    e_src = torch.eye(4)[None].clone()
    angle = 0.03
    e_src[0, :3, :3] = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    e_src[0, :3, 3] = torch.tensor([-0.5, 0.05, 0.0])
    return k, torch.eye(4)[None], k.clone(), e_src


def _source_pixels(depth: torch.Tensor) -> torch.Tensor:
    """Where the reference pixels at ``depth`` (1, 1, h, w) project in the source view, computed independently."""
    k_ref, e_ref, k_src, e_src = (t.float() for t in _cameras())
    rotation, translation = relative_pose(e_ref, e_src)
    pixels = pixel_grid(*depth.shape[-2:])
    rays = torch.cat([pixels, torch.ones_like(pixels[:, :1])], -1) @ torch.linalg.inv(k_ref[0]).T
    points = rays * depth.reshape(-1, 1)
    projected, _ = project((points @ rotation[0].T + translation[0])[None], k_src)
    return projected[0]


def test_sampled_epipolar_line_passes_through_the_projection_of_every_depth():
    init = torch.full((1, 1, 16, 20), 4.0)
    geometry = _geometry(init, torch.zeros(1, 4, 16, 20))
    for depth_value in (2.5, 4.0, 9.0, 40.0):
        depth = torch.full_like(init, depth_value)
        flow = geometry.flow_from_depth(depth)
        torch.testing.assert_close(geometry.match(flow)[0], _source_pixels(depth), atol=2e-3, rtol=0)
        # larger depth moves the match in +direction; triangulation gives the depth back
        assert (flow > 0).all() if depth_value > 4.0 else (flow <= 1e-4).all()
        torch.testing.assert_close(geometry.inverse_depth(flow), 1.0 / depth, atol=1e-5, rtol=1e-4)


def test_cost_samples_the_source_along_the_line_with_consistent_pyramid_coordinates():
    # Source "features" = the pixel's own x and y coordinate (linear, so bilinear sampling and 2x2 average pooling
    # reproduce the coordinate exactly away from the border): the cost then reads back the sampled position.
    h, w = 128, 160
    grid = pixel_grid(h, w).T.reshape(1, 2, h, w)
    geometry = _geometry(torch.full((1, 1, h, w), 5.0), grid, levels=2, radius=2, cameras=_overlapping_cameras())
    flow = torch.full((1, 1, h, w), 1.5)
    reference = torch.zeros(1, 2, h, w)
    reference[:, 0] = 2.0  # dot product / channels = x coordinate
    cost = geometry.cost(reference, flow).reshape(2, 5, -1)  # (level, offset, pixel)
    matches = torch.stack([geometry.match(flow + s)[0] for s in range(-2, 3)])  # (offset, pixel, xy)
    expected = matches[..., 0]
    inside = ((matches > 3) & (matches < torch.tensor([w - 4.0, h - 4.0]))).all(-1).all(0)
    assert inside.sum() > 1000
    for level in range(2):
        torch.testing.assert_close(cost[level][:, inside], expected[:, inside], atol=1e-3, rtol=0)


def test_grid_intrinsics_keep_pixel_centres_aligned():
    k = torch.tensor([[[500.0, 0, 319.5], [0, 520, 255.5], [0, 0, 1]]])
    k16 = grid_intrinsics(k, 16)
    point = torch.tensor([[[0.3, -0.2, 4.0]]])
    full, _ = project(point, k)
    coarse, _ = project(point, k16)
    torch.testing.assert_close(coarse, (full + 0.5) / 16 - 0.5)


def test_convex_upsampling_is_convex_and_checks_shapes():
    x = torch.randn(2, 1, 5, 6)
    up = convex_upsample(x, torch.randn(2, 144, 5, 6), 4)
    assert up.shape == (2, 1, 20, 24)
    windows = F.max_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert (up <= F.interpolate(windows, scale_factor=4, mode="nearest") + 1e-6).all()
    constant = convex_upsample(torch.full((1, 1, 3, 3), 7.0), torch.randn(1, 144, 3, 3), 4)
    torch.testing.assert_close(constant, torch.full((1, 1, 12, 12), 7.0))
    with pytest.raises(ValueError, match="mask_logits must have shape"):
        convex_upsample(x, torch.randn(2, 9, 5, 6), 4)


@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_conv_starts_as_an_ordinary_convolution(modulated):
    layer = DeformableConv2d(4, 6, 3, padding=1, modulated=modulated)
    x = torch.randn(2, 4, 9, 11)
    expected = F.conv2d(x, layer.weight, layer.bias, padding=1)
    if modulated:
        expected = F.conv2d(x, layer.weight * 0.5, layer.bias, padding=1)  # sigmoid(0) = 0.5 per tap
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-4)
    layer(x).sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0  # offsets learn


def _tiny_batch(seed: int = 0):
    data = DTUDataModule(num_views=3, batch_size=2, synthetic_size=(128, 160), synthetic_seed=seed)
    data.prepare_data()
    data.setup("fit")
    return data, next(iter(data.val_dataloader()))


def test_forward_outputs_and_depth_range_contract():
    torch.manual_seed(0)
    net = create_model("dispmvs_tiny", coarse_iterations=3, fine_iterations=2)
    _, batch = _tiny_batch()
    net.eval()
    with torch.no_grad():
        out = net(batch["images"], batch["intrinsics"], batch["extrinsics"], batch["depth_range"])
        again = net(batch["images"], batch["intrinsics"], batch["extrinsics"], batch["depth_range"])
    b, _, _, h, w = batch["images"].shape
    assert out["depth"].shape == out["confidence"].shape == (b, 1, h, w)
    assert [t.shape for t in out["coarse"]] == [(b, 1, h // 4, w // 4)] * 3
    assert [t.shape for t in out["fine"]] == [(b, 1, h, w)] * 2
    near, far = batch["depth_range"][:, 0, None, None, None], batch["depth_range"][:, 1, None, None, None]
    assert ((out["depth"] >= near * (1 - 1e-5)) & (out["depth"] <= far * (1 + 1e-5))).all()
    assert ((out["confidence"] >= 0) & (out["confidence"] <= 1 + 1e-6)).all()
    torch.testing.assert_close(out["depth"], again["depth"])  # eval: seeded random initial depth
    with pytest.raises(ValueError, match="multiples of 16"):
        net(batch["images"][..., :120, :], batch["intrinsics"], batch["extrinsics"], batch["depth_range"])


def test_official_width_parameter_count():
    # Counted from this implementation (same layer plan as the official code, DCNv1 heads without bias).
    assert sum(p.numel() for p in DispMVS().parameters()) == 10_444_838


def test_loss_weights_iterations_by_decay_and_restarts_per_stage():
    depth = torch.full((1, 1, 16, 16), 4.0)
    valid = torch.ones_like(depth, dtype=torch.bool)
    depth_range = torch.tensor([[2.0, 8.0]])
    target = normalised_inverse_depth(depth, depth_range)  # (1/4 - 1/8) / (1/2 - 1/8) = 1/3
    assert float(target.mean()) == pytest.approx(1 / 3)
    output = {
        "coarse": [torch.full((1, 1, 4, 4), float(target.mean()) + e) for e in (0.3, 0.2, 0.1)],
        "fine": [torch.full((1, 1, 16, 16), float(target.mean()) + e) for e in (0.05, 0.01)],
    }
    expected = 0.3 + 0.9 * 0.2 + 0.81 * 0.1 + 0.05 + 0.9 * 0.01
    assert float(dispmvs_loss(output, depth, valid, depth_range)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no valid ground-truth"):
        dispmvs_loss(output, depth, ~valid, depth_range)


def test_short_training_lowers_depth_error_below_a_constant_depth_guess(tmp_path):
    L.seed_everything(0)
    data = DTUDataModule(num_views=3, batch_size=2, synthetic_size=(128, 160))
    module = DispMVSModule(
        net=create_model("dispmvs_tiny", coarse_iterations=4, fine_iterations=1),
        lr=1e-3,
        milestones=[100],
        thresholds=(0.1,),
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=90,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=1000,
        default_root_dir=tmp_path,
    )
    before = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer.fit(module, datamodule=data)
    after = trainer.validate(module, datamodule=data, verbose=False)[0]
    # The best constant guess (the median ground-truth depth of each view) as a yardstick.
    errors = [(b["depth"][b["valid"]] - b["depth"][b["valid"]].median()).abs().mean() for b in data.val_dataloader()]
    constant_guess = float(torch.stack(errors).mean())
    print(f"val/abs_err {before['val/abs_err']:.3f} -> {after['val/abs_err']:.3f} (constant: {constant_guess:.3f})")
    assert after["val/abs_err"] < 0.6 * before["val/abs_err"]
    assert after["val/abs_err"] < constant_guess
    assert after["val/within_0.1"] > before["val/within_0.1"]
    assert math.isfinite(after["val/abs_err"])
