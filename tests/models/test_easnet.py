"""EASNet supernet: exact parameter counts, sub-network extraction, BN re-estimation, search, progressive shrinking."""

from __future__ import annotations

import random

import lightning as L
import pytest
import torch
from torch import nn

from lightning_hpml.datamodules.stereo import SceneFlowDataModule
from lightning_hpml.modules import create_model, list_models
from lightning_hpml.modules.layers import warp_right_to_left
from lightning_hpml.modules.stereo.easnet import EASNet, EASNetSubnet, SubnetConfig, reestimate_bn
from lightning_hpml.modules.stereo.easnet.module import (
    EASNET_SCENEFLOW_PHASES,
    EASNetModule,
    ShrinkPhase,
    aanet_loss,
    pyramid_weights,
)
from lightning_hpml.modules.stereo.easnet.ofa_blocks import DynamicMBConv
from lightning_hpml.modules.stereo.easnet.search import measure_latency, search_subnet
from lightning_hpml.modules.stereo.easnet.supernet import checkpoint_filter_fn

H, W = 48, 96  # smallest input with a 2x4 map at 1/24


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize(net: nn.Module, seed: int = 0) -> None:
    """Make BN statistics, transform matrices and deformable offsets non-trivial, so equivalence tests can fail."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
        for name, p in net.named_parameters():
            if "transform_" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
            elif "offset_conv" in name:
                p.copy_(0.01 * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="module")
def supernet() -> EASNet:
    torch.manual_seed(0)
    net = EASNet()
    randomize(net)
    return net.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, H, W, generator=gen), torch.rand(1, 3, H, W, generator=gen)


# ---------------------------------------------------------------- parameter counts (official, measured)
def test_supernet_parameter_counts_match_the_official_model(supernet):
    assert n_params(supernet) == 5_078_506
    assert n_params(supernet.features) == 3_401_360
    assert n_params(supernet.aggregation) == 1_451_704
    assert n_params(supernet.refinement) == 225_442
    transforms = [p for name, p in supernet.named_parameters() if "transform_" in name]
    assert len(transforms) == 32 and sum(p.numel() for p in transforms) == 16 * (625 + 81)


def test_kernel7_only_supernet_and_largest_subnet_have_5067210_parameters(supernet):
    with torch.device("meta"):
        assert n_params(EASNet(kernel_sizes=(7,))) == 5_067_210
        assert n_params(create_model("easnet_large")) == 5_067_210
        assert n_params(create_model("easnet_small")) == 781_814
    assert n_params(supernet.extract_subnet(supernet.max_config)) == 5_067_210


def test_smallest_subnet_matches_the_official_count_only_with_its_unused_heads(supernet):
    assert n_params(supernet.extract_subnet(supernet.min_config, keep_unused_heads=True)) == 782_158
    assert n_params(supernet.extract_subnet(supernet.min_config)) == 782_158 - 344


def test_registry_lists_the_easnet_sizes():
    assert {"easnet", "easnet_large", "easnet_small"} <= set(list_models("easnet*"))


# ---------------------------------------------------------------- forward
@pytest.mark.parametrize("scales", [2, 3, 4])
def test_forward_returns_pyramid_coarsest_first_and_full_resolution_disparity(supernet, pair, scales):
    supernet.set_active_subnet(s=scales)
    try:
        with torch.no_grad():
            out = supernet(*pair)
    finally:
        supernet.set_max_net()
    assert out["disparity"].shape == (1, 1, H, W)
    assert len(out["pyramid"]) == scales + 2
    widths = [p.shape[-1] for p in out["pyramid"]]
    assert widths == [W // (3 * 2**s) for s in reversed(range(scales))] + [W // 2, W]
    assert out["pyramid"][-1] is out["disparity"]
    assert all(torch.isfinite(p).all() and (p >= 0).all() for p in out["pyramid"])
    assert supernet.size_divisor == 24


def test_forward_and_backward_on_a_training_supernet_reach_every_active_block():
    torch.manual_seed(0)
    net = EASNet().train()
    net.set_active_subnet(ks=3, e=2, d=2, s=2)
    out = net(torch.rand(2, 3, H, W), torch.rand(2, 3, H, W))
    sum(p.mean() for p in out["pyramid"]).backward()
    blocks = net.features.blocks
    assert blocks[0].conv.depth_conv.transform_5to3.grad is not None  # K3 goes through both transforms
    assert blocks[2].conv.expand_conv.weight.grad is None  # depth 2: block 3 of stage 1 unused
    assert blocks[8].conv.expand_conv.weight.grad is None  # scale 2: stage 3 unused


def test_set_active_subnet_validates_choices_and_lengths(supernet):
    with pytest.raises(ValueError, match="ks"):
        supernet.set_active_subnet(ks=4)
    with pytest.raises(ValueError, match="16 entries"):
        supernet.set_active_subnet(e=[2, 4])
    with pytest.raises(ValueError, match="`s`"):
        supernet.set_active_subnet(s=1)
    supernet.set_active_subnet(ks=[3, 5, 7, 7] * 4, d=[2, 3, 4, 2])
    config = supernet.active_config
    assert config.ks[:4] == (3, 5, 7, 7) and config.d == (2, 3, 4, 2) and config.s == 4
    supernet.set_max_net()
    assert supernet.active_config == supernet.max_config


def test_smaller_kernels_are_transformed_centre_crops():
    block = DynamicMBConv(8, 8, (3, 5, 7), (2,), 1, False)
    conv = block.depth_conv
    w = conv.weight[:4]
    # Identity transforms: a pure centre crop.
    torch.testing.assert_close(conv.active_filter(4, 3), w[:, :, 2:5, 2:5])
    with torch.no_grad():
        conv.transform_7to5.copy_(torch.randn(25, 25))
    k5 = (w[:, :, 1:6, 1:6].reshape(4, 25) @ conv.transform_7to5.T).reshape(4, 1, 5, 5)
    torch.testing.assert_close(conv.active_filter(4, 5), k5)
    k3 = (k5[:, :, 1:4, 1:4].reshape(4, 9) @ conv.transform_5to3.T).reshape(4, 1, 3, 3)
    torch.testing.assert_close(conv.active_filter(4, 3), k3)


# Official OFAAANet state-dict keys -> shapes, read from the official definition built on CPU (a torchvision
# stand-in for its CUDA deformable conv); the full 1,564-key conversion was checked there, see the module docstring.
OFFICIAL_KEYS = {
    "feature_extractor.0.conv.inverted_bottleneck.conv.conv.weight": (24, 3, 1, 1),
    "feature_extractor.5.conv.inverted_bottleneck.bn.bn.running_var": (256,),
    "feature_extractor.5.conv.depth_conv.conv.conv.weight": (256, 1, 7, 7),
    "feature_extractor.5.conv.depth_conv.conv.7to5_matrix": (25, 25),
    "feature_extractor.5.conv.depth_conv.conv.5to3_matrix": (9, 9),
    "feature_extractor.5.conv.depth_conv.bn.bn.weight": (256,),
    "feature_extractor.5.conv.depth_conv.se.fc.reduce.weight": (64, 256, 1, 1),
    "feature_extractor.5.conv.depth_conv.se.fc.expand.bias": (256,),
    "feature_extractor.5.conv.point_linear.conv.conv.weight": (32, 256, 1, 1),
    "feature_extractor.15.conv.point_linear.bn.bn.num_batches_tracked": (),
    "aggregation.fusions.0.branches.0.0.conv2.weight": (64, 64, 3, 3),
    "aggregation.fusions.0.fuse_layers.0.3.0.weight": (64, 8, 1, 1),
    "aggregation.fusions.0.fuse_layers.3.2.0.1.running_mean": (8,),
    "aggregation.fusions.3.branches.0.0.conv2.deform_conv.weight": (64, 64, 3, 3),
    "aggregation.fusions.3.branches.0.0.conv2.offset_conv.weight": (54, 32, 3, 3),
    "aggregation.final_conv.3.bias": (8,),
    "refinement.0.conv1.0.weight": (16, 6, 3, 3),
    "refinement.1.conv2.1.running_var": (16,),
    "refinement.0.dilated_blocks.5.conv2.weight": (32, 32, 3, 3),
    "refinement.1.final_conv.bias": (1,),
}


def test_checkpoint_filter_fn_maps_official_keys_onto_ours(supernet):
    state = {"state_dict": {"module." + k: torch.zeros(shape) for k, shape in OFFICIAL_KEYS.items()}}
    converted = checkpoint_filter_fn(state, supernet)
    ours = supernet.state_dict()
    assert len(converted) == len(OFFICIAL_KEYS)
    for key, value in converted.items():
        assert ours[key].shape == value.shape, key
    with pytest.raises(KeyError, match="not in the model"):
        checkpoint_filter_fn({"bogus.weight": torch.zeros(1)}, supernet)


def test_official_warp_reproduces_the_half_pixel_offset():
    w = 16
    ramp = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 1, 4, w).contiguous()
    zero = torch.zeros(1, 1, 4, w)
    x = torch.arange(w, dtype=torch.float32)
    expected = (x * w / (w - 1) - 0.5).clamp(0, w - 1)
    torch.testing.assert_close(warp_right_to_left(ramp, zero, align_corners=False)[0, 0, 0], expected)
    net = EASNet(official_warp=True)
    assert all(r.official_warp for r in net.refinement)
    assert all(r.official_warp for r in net.extract_subnet(net.min_config).refinement)


# ---------------------------------------------------------------- extraction
def test_extracted_subnets_compute_the_same_outputs_as_the_supernet(supernet, pair):
    rng = random.Random(0)
    configs = [supernet.min_config, supernet.max_config] + [supernet.sample_active_subnet(rng=rng) for _ in range(3)]
    supernet.set_max_net()
    for config in configs:
        supernet.set_active_subnet(config=config)
        with torch.no_grad():
            expected = supernet(*pair)["pyramid"]
        subnet = supernet.extract_subnet().eval()
        assert isinstance(subnet, EASNetSubnet) and subnet.config == config
        assert not any(isinstance(m, DynamicMBConv) for m in subnet.modules())
        with torch.no_grad():
            got = subnet(*pair)["pyramid"]
        assert len(got) == len(expected) == config.s + 2
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    supernet.set_max_net()


def test_extract_subnet_restores_the_active_config_and_copies_weights(supernet):
    supernet.set_max_net()
    subnet = supernet.extract_subnet(supernet.min_config)
    assert supernet.active_config == supernet.max_config
    with torch.no_grad():
        subnet.refinement[0].final_conv.bias.add_(1.0)
    assert not torch.equal(subnet.refinement[0].final_conv.bias, supernet.refinement[0].final_conv.bias)


def test_extracted_subnet_evaluates_through_stereo_module_padding(supernet):
    from lightning_hpml.modules.stereo import StereoModule

    subnet = supernet.extract_subnet(supernet.min_config).eval()
    assert subnet.size_divisor == 6
    module = StereoModule(subnet, supervised_outputs=(), log_images=False)
    with torch.no_grad():
        out = module.predict_disparity(torch.rand(1, 3, 40, 70), torch.rand(1, 3, 40, 70))
    assert out["disparity"].shape == (1, 1, 40, 70)


def test_subnet_config_make_and_canonical():
    config = SubnetConfig.make(3, 2, [2, 2, 4, 4], 2)
    assert len(config.ks) == 16 and config.as_dict()["d"] == [2, 2, 4, 4]
    other = SubnetConfig(config.ks[:8] + (7,) * 8, config.e, config.d, 2)  # differs only in unused blocks
    assert other != config and other.canonical() == config.canonical()
    assert config.active_blocks() == [0, 1, 4, 5]


def test_reorganize_middle_weights_keeps_the_largest_network_function(pair):
    torch.manual_seed(0)
    net = EASNet()
    randomize(net, seed=3)
    net.eval()
    with torch.no_grad():
        before = net(*pair)["disparity"]
        net.reorganize_middle_weights()
        after = net(*pair)["disparity"]
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    block = net.features.blocks[1].conv
    importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_reorganize_with_an_expand_stage_sorts_within_width_bands_only():
    torch.manual_seed(0)
    block = DynamicMBConv(24, 32, (3,), (2, 4, 6, 8), 1, True)  # hidden widths 48 / 96 / 144 / 192
    importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3)).clone()
    order = block.reorganize_middle_weights(expand_ratio_stage=2)
    for lo, hi in ((0, 96), (96, 144), (144, 192)):
        assert sorted(order[lo:hi].tolist()) == list(range(lo, hi))
        band = importance[order[lo:hi]]
        # Sorted up to the float32 resolution at the 1e5-scale band offsets (as in the official code).
        assert torch.all(band[:-1] >= band[1:] - 1 / 16)
    assert order[:96].tolist() != list(range(96))


def test_reestimate_bn_averages_batch_statistics(supernet):
    subnet = supernet.extract_subnet(supernet.min_config).eval()
    gen = torch.Generator().manual_seed(5)
    batches = [{"left": torch.rand(2, 3, H, W, generator=gen), "right": torch.rand(2, 3, H, W, generator=gen)}]
    batches.append({"left": batches[0]["left"] * 0.5, "right": batches[0]["right"] * 0.5})
    first = subnet.features.stages[0][0].conv.inverted_bottleneck
    seen = []
    handle = first.conv.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        assert reestimate_bn(subnet, batches) == 2
    finally:
        handle.remove()
    # Each batch runs the feature extractor on left then right: 4 activations, 2 per batch.
    per_batch = [torch.cat(seen[2 * k : 2 * k + 2]) for k in range(2)]
    expected = torch.stack([x.mean(dim=(0, 2, 3)) for x in per_batch]).mean(0)
    assert not subnet.training
    assert first.bn.momentum == 0.1
    # The two feature passes of a batch are separate BN calls: average of 4 per-call means.
    calls = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen]).mean(0)
    torch.testing.assert_close(first.bn.running_mean, calls)
    torch.testing.assert_close(calls, expected)
    with pytest.raises(ValueError, match="no batch"):
        reestimate_bn(subnet, [])


# ---------------------------------------------------------------- search
def test_search_subnet_meets_a_latency_budget_on_this_cpu(supernet):
    torch.manual_seed(0)
    lat_min = measure_latency(supernet.extract_subnet(supernet.min_config), (H, W), repeats=3)
    budget = 2.0 * lat_min  # generous for the smallest net (timing noise on a shared CPU), may exclude larger ones
    result = search_subnet(supernet, budget, "cpu", (H, W), num_candidates=3, repeats=3)
    assert result.latency_ms <= budget
    assert result.accuracy_source == "proxy:params"
    assert all(row["within_budget"] == (row["latency_ms"] <= budget) for row in result.candidates)
    scored = [row for row in result.candidates if row["within_budget"]]
    assert result.accuracy == max(row["accuracy"] for row in scored)
    assert result.accuracy == n_params(result.subnet)
    # A huge budget picks the largest network, an impossible one raises.
    assert search_subnet(supernet, 1e9, "cpu", (H, W), num_candidates=0, repeats=1).config == supernet.max_config
    with pytest.raises(ValueError, match="no candidate meets"):
        search_subnet(supernet, 1e-6, "cpu", (H, W), num_candidates=0, repeats=1)


def test_search_subnet_scores_with_a_validation_pass():
    torch.manual_seed(0)
    net = EASNet(depths=(2,), scales=(2,), expand_ratios=(2,), kernel_sizes=(3, 5))
    gen = torch.Generator().manual_seed(0)
    batch = {
        "left": torch.rand(1, 3, H, W, generator=gen),
        "right": torch.rand(1, 3, H, W, generator=gen),
        "disparity": torch.full((1, 1, H, W), 4.0),
        "valid": torch.ones(1, 1, H, W, dtype=torch.bool),
    }
    candidates = [SubnetConfig.make(3, 2, 2, 2), SubnetConfig.make(5, 2, 2, 2)]
    result = search_subnet(
        net, 1e9, "cpu", (H, W), candidates=candidates, val_batches=[batch], bn_batches=[batch], repeats=1
    )
    assert result.accuracy_source == "validation"
    assert all(row["accuracy"] is not None and row["accuracy"] <= 0 for row in result.candidates)
    assert result.accuracy == max(row["accuracy"] for row in result.candidates)


# ---------------------------------------------------------------- loss and training
def test_pyramid_weights_follow_the_official_table():
    assert pyramid_weights(6) == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1])
    assert pyramid_weights(4) == pytest.approx([1 / 3, 2 / 3, 1, 1])
    with pytest.raises(ValueError):
        pyramid_weights(2)


def test_aanet_loss_upsamples_scales_and_masks():
    target = torch.full((1, 1, 8, 16), 6.0)
    target[..., 0, 0] = 500.0  # beyond max_disp: ignored
    valid = torch.ones_like(target, dtype=torch.bool)
    exact = [torch.full((1, 1, 2, 4), 1.5), torch.full((1, 1, 4, 8), 3.0), torch.full((1, 1, 8, 16), 6.0)] * 2
    total, per_output = aanet_loss(exact[:4], target, valid)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    off = [torch.full((1, 1, 8, 16), 7.0)] * 4  # 1 px error everywhere: SmoothL1 = 0.5 per output
    total, per_output = aanet_loss(off, target, valid)
    assert [p.item() for p in per_output] == pytest.approx([0.5] * 4)
    assert total.item() == pytest.approx(0.5 * (1 / 3 + 2 / 3 + 1 + 1))


def test_phase_schedule_and_learning_rate():
    module = EASNetModule(EASNet(), phases=list(EASNET_SCENEFLOW_PHASES), log_images=False)
    assert module.phase_at(0) == (0, 0) and module.phase_at(63) == (0, 63)
    assert module.phase_at(64) == (1, 0) and module.phase_at(171) == (4, 26) and module.phase_at(500)[0] == 4
    assert module.lr_at(0.0) == pytest.approx(1e-3)
    assert module.lr_at(32.0) == pytest.approx(5e-4)
    assert module.lr_at(64.0) == module.lr_at(65.5) == pytest.approx(5e-4)  # constant warm-up (warmup_lr = lr)
    assert module.lr_at(66.0) == pytest.approx(5e-4) and module.lr_at(66.0 + 12.5) == pytest.approx(2.5e-4)
    assert module.lr_at(90.9) == pytest.approx(0.0, abs=1e-6)
    warm = EASNetModule(EASNet(), phases=[ShrinkPhase("k", 4, 1.0, ["kernel"], 1, 2, warmup_lr=0.0)])
    assert warm.lr_at(1.0) == pytest.approx(0.5) and warm.lr_at(3.0) == pytest.approx(0.5)
    optimizer = module.configure_optimizers()
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(module.net.parameters()))
    with pytest.raises(ValueError, match="elastic"):
        ShrinkPhase("x", 1, 1e-3, ["width"])
    with pytest.raises(TypeError, match="EASNet"):
        EASNetModule(nn.Linear(1, 1))


def test_easnet_module_trains_through_shrinking_phases_on_synthetic_sceneflow(tmp_path):
    L.seed_everything(0)
    data = SceneFlowDataModule(
        root=None,
        synthetic_dir=str(tmp_path / "sceneflow"),
        synthetic_options={
            "subsets": ("FlyingThings3D",),
            "num_sequences": 1,
            "num_test_sequences": 1,
            "frames_per_sequence": 2,
            "height": 72,
            "width": 120,
            "anti_alias": 1,
        },
        subsets=("FlyingThings3D",),
        crop_size=(H, W),
        batch_size=2,
        num_workers=0,
    )
    phases = [
        ShrinkPhase("large", 1, 1e-3, [], 1, 0),
        ShrinkPhase("expand", 1, 5e-4, ["kernel", "depth", "expand", "scale"], 2, 0),
    ]
    net = EASNet(expand_ratios=(2, 4), depths=(2, 4), scales=(2, 4))
    module = EASNetModule(net, phases=phases, log_images=False, val_bn_batches=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    key = "refinement.1.final_conv.bias"
    bn_key = "features.blocks.0.conv.project_bn.bn.running_mean"

    class BNWatch(L.Callback):
        def __init__(self) -> None:
            self.snapshots: dict[str, torch.Tensor] = {}

        def on_validation_epoch_start(self, trainer, pl_module):  # runs before the module's hook
            self.snapshots["train"] = pl_module.net.state_dict()[bn_key].clone()

        def on_validation_batch_start(self, trainer, pl_module, *args):
            self.snapshots["val"] = pl_module.net.state_dict()[bn_key].clone()

        def on_train_epoch_end(self, trainer, pl_module):
            self.snapshots["after"] = pl_module.net.state_dict()[bn_key].clone()

    watch = BNWatch()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[watch],
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2
    assert module._phase_index == 1
    # Validation used re-estimated BN statistics; training statistics were restored afterwards.
    assert not torch.equal(watch.snapshots["val"], watch.snapshots["train"])
    torch.testing.assert_close(watch.snapshots["after"], watch.snapshots["train"])
    assert not torch.equal(net.state_dict()[key], before[key])
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "val/epe" in trainer.callback_metrics
    assert net.active_config == module.eval_subnet  # validation ran the evaluation sub-network
    after = net.state_dict()
    assert not torch.equal(
        after["features.blocks.0.conv.expand_conv.weight"], before["features.blocks.0.conv.expand_conv.weight"]
    )


def test_sceneflow_config_builds_the_supernet_with_the_official_phases():
    from pathlib import Path

    from lightning_hpml.cli import main

    config = Path(__file__).parents[2] / "configs" / "easnet_sceneflow.yaml"
    cli = main(["--config", str(config)], run=False)
    assert isinstance(cli.model, EASNetModule) and isinstance(cli.model.net, EASNet)
    assert n_params(cli.model.net) == 5_078_506
    assert cli.model.phases == list(EASNET_SCENEFLOW_PHASES)
    assert cli.trainer.max_epochs == sum(p.epochs for p in EASNET_SCENEFLOW_PHASES) == 172
    assert cli.model.eval_subnet == cli.model.net.max_config


def test_phase_index_survives_a_checkpoint_round_trip():
    module = EASNetModule(EASNet(), log_images=False)
    module._phase_index = 3
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = EASNetModule(EASNet(), log_images=False)
    restored.on_load_checkpoint(checkpoint)
    assert restored._phase_index == 3
