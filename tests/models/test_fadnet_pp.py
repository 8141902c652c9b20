"""FADNet++ family: official parameter counts, 7-scale outputs, dynamic correlation width, checkpoint key mapping,
and a short StereoModule training run on synthetic Scene Flow."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_hpml.cli import main
from lightning_hpml.datamodules.stereo import SceneFlowDataModule
from lightning_hpml.modules import create_model, list_models
from lightning_hpml.modules.layers.dynamic_conv import DynamicConv2d, DynamicResBlock
from lightning_hpml.modules.stereo import FADNetPP, LossRound, StereoModule
from lightning_hpml.modules.stereo.fadnet_pp import checkpoint_filter_fn, correlation_width

# Measured on the official ``FADNet(maxdisp=192, encoder_ratio, decoder_ratio)`` (reference notes, section 2.2).
OFFICIAL_PARAMS = {
    "fadnetpp_x": 497_077_376,
    "fadnetpp": 124_381_856,
    "fadnetpp_mobile": 31_151_792,
    "fadnetpp_slight": 7_816_184,
    "fadnetpp_tiny": 1_645_984,
    "fadnetpp_micro": 499_226,
}
SMALL_SIZES = ("fadnetpp_micro", "fadnetpp_tiny")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv3_1_input_channels(net: FADNetPP, left: torch.Tensor, right: torch.Tensor) -> int:
    """Run ``net`` and return how many channels entered the dynamic block after the correlation."""
    seen = []
    handle = net.cunet.conv3_1.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[1]))
    try:
        net(left, right)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMS))
def test_parameter_count_matches_official(name):
    # The meta device allocates nothing, so even the 497M-parameter model is cheap to count.
    with torch.device("meta"):
        net = create_model(name)
    assert n_params(net) == OFFICIAL_PARAMS[name]


def test_registry_has_all_six_sizes_with_official_ratios():
    assert set(list_models("fadnetpp*")) == set(OFFICIAL_PARAMS)
    with torch.device("meta"):
        ratios = {n: (create_model(n).encoder_ratio, create_model(n).decoder_ratio) for n in OFFICIAL_PARAMS}
    assert ratios == {
        "fadnetpp_x": (32, 32),
        "fadnetpp": (16, 16),
        "fadnetpp_mobile": (8, 8),
        "fadnetpp_slight": (4, 4),
        "fadnetpp_tiny": (2, 1),
        "fadnetpp_micro": (1, 1),
    }


def test_channel_plan_of_the_ratio_16_model():
    with torch.device("meta"):
        net = create_model("fadnetpp")
    assert net.extract_network.conv1[0].out_channels == 32  # E = 2 * 16, not FADNet's 64
    assert net.cunet.conv_redir.conv1.out_channels == 32
    # DyRes allocated for MAX_RANGE = 400: 400 // 8 + 16 correlation channels + E redirected channels.
    assert net.cunet.conv3_1.conv1.conv.weight.shape == (128, 66 + 32, 3, 3)
    assert net.cunet.conv3_1.conv1.conv.bias is None
    assert net.cunet.decoder.upconvs[0][0].weight.shape[:2] == (1024, 512)  # upconv5 32E -> 16D
    assert net.cunet.decoder.iconvs[0].in_channels == 512 + 1 + 512  # (D + E) * 16 + 1
    assert net.cunet.decoder.upconvs[5][0].weight.shape[:2] == (32, 32)  # upconv0 D -> D
    assert net.cunet.decoder.iconvs[5].in_channels == 32 + 1 + 3  # D + 1 + image
    assert net.dispnetres.conv1[0].in_channels == 11


@pytest.mark.parametrize("name", SMALL_SIZES)
def test_small_sizes_return_seven_scales_and_train(name):
    torch.manual_seed(0)
    net = create_model(name)
    left, right = torch.rand(2, 3, 128, 256), torch.rand(2, 3, 128, 256)
    out = net(left, right)
    expected = [(128 // 2**k, 256 // 2**k) for k in range(7)]
    for stage in ("stage1", "stage2"):
        assert [tuple(p.shape) for p in out[stage]] == [(2, 1, *hw) for hw in expected]
    assert out["disparity"] is out["stage2"][0]
    assert all((p >= 0).all() for p in out["stage2"])  # ReLU on every refined scale
    assert (out["stage1"][0] >= 0).all()
    loss = sum(p.mean() for p in out["stage1"] + out["stage2"])
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


def test_max_disp_changes_correlation_width_with_the_same_weights():
    torch.manual_seed(0)
    net = create_model("fadnetpp_micro").eval()
    e = 2 * net.encoder_ratio
    left, right = torch.rand(1, 3, 64, 384), torch.rand(1, 3, 64, 384)
    names = [n for n, _ in net.named_parameters()]
    with torch.no_grad():
        assert net.corr_displacements == correlation_width(192) == 40
        assert conv3_1_input_channels(net, left, right) == 40 + e
        out192 = net(left, right)["disparity"]
        net.max_disp = 96
        assert net.corr_displacements == 28
        assert conv3_1_input_channels(net, left, right) == 28 + e
        out96 = net(left, right)["disparity"]
    assert [n for n, _ in net.named_parameters()] == names
    assert not torch.allclose(out96, out192)
    # A model built for max_disp 96 has exactly the same state dict layout: weights load strictly both ways.
    other = create_model("fadnetpp_micro", max_disp=96).eval()
    assert n_params(other) == OFFICIAL_PARAMS["fadnetpp_micro"]
    other.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(other(left, right)["disparity"], out96)


def test_max_disp_is_validated():
    net = create_model("fadnetpp_micro")
    with pytest.raises(ValueError, match="max_disp"):
        net.max_disp = 401
    with pytest.raises(ValueError, match="max_disp"):
        create_model("fadnetpp_micro", max_disp=0)
    with pytest.raises(ValueError, match="encoder_ratio"):
        FADNetPP(encoder_ratio=0)
    with pytest.raises(ValueError, match="divisible by 64"):
        net(torch.rand(1, 3, 64, 100), torch.rand(1, 3, 64, 100))
    # A larger allocation admits a larger range (and adds parameters only to the dynamic block).
    big = FADNetPP(1, 1, max_disp=512, max_range=512)
    assert big.corr_displacements == 80
    assert n_params(big) - OFFICIAL_PARAMS["fadnetpp_micro"] == (512 // 8 - 400 // 8) * 8 * (9 + 1)


def test_dynamic_conv_equals_a_plain_conv_on_the_sliced_weight():
    torch.manual_seed(0)
    conv = DynamicConv2d(10, 4, kernel_size=3, stride=2)
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    y = conv(x)
    reference = torch.nn.functional.conv2d(x, conv.conv.weight[:, :6], None, 2, 1)
    torch.testing.assert_close(y, reference)
    y.sum().backward()
    grad = conv.conv.weight.grad
    assert grad[:, :6].abs().sum() > 0
    assert (grad[:, 6:] == 0).all()  # unused input channels get no update
    with pytest.raises(ValueError, match="at most 10"):
        conv(torch.randn(1, 11, 9, 9))
    with pytest.raises(ValueError, match="odd"):
        DynamicConv2d(4, 4, kernel_size=2)


def test_dynamic_res_block_matches_a_res_block_when_fully_used():
    torch.manual_seed(0)
    block = DynamicResBlock(6, 8).eval()
    x = torch.randn(1, 6, 8, 8)
    conv1 = block.conv1.conv
    expected_mid = block.relu(block.bn1(torch.nn.functional.conv2d(x, conv1.weight, None, 1, 1)))
    expected = block.relu(block.bn2(block.conv2(expected_mid)) + block.shortcut(x))
    torch.testing.assert_close(block(x), expected)
    assert isinstance(DynamicResBlock(8, 8).shortcut, torch.nn.Identity)


def test_checkpoint_filter_maps_official_keys():
    official = {
        "module.extract_network.conv1.0.weight": 1,
        "module.cunet.conv3_1.conv1.conv.weight": 2,
        "module.cunet.conv3_1.shortcut.0.conv.weight": 3,
        "module.cunet.conv4.conv1.weight": 4,
        "module.cunet.conv6_1.bn2.running_mean": 5,
        "module.cunet.pred_flow6.weight": 6,
        "module.cunet.upconv5.0.weight": 7,
        "module.cunet.upflow6to5.weight": 8,
        "module.cunet.iconv5.bias": 9,
        "module.cunet.pred_flow5.weight": 10,
        "module.dispnetres.upflow1to0.weight": 11,
        "module.dispnetres.iconv0.weight": 12,
        "module.dispnetres.pred_res0.weight": 13,
        "module.dispnetres.pred_res6.weight": 14,
        "module.dispnetres.conv3_1.conv2.bias": 15,
    }
    mapped = checkpoint_filter_fn({"state_dict": official})
    assert mapped == {
        "extract_network.conv1.0.weight": 1,
        "cunet.conv3_1.conv1.conv.weight": 2,
        "cunet.conv3_1.shortcut.0.conv.weight": 3,
        "cunet.tail.conv4.conv1.weight": 4,
        "cunet.tail.conv6_1.bn2.running_mean": 5,
        "cunet.decoder.head6.weight": 6,
        "cunet.decoder.upconvs.0.0.weight": 7,
        "cunet.decoder.upsamplers.0.weight": 8,
        "cunet.decoder.iconvs.0.bias": 9,
        "cunet.decoder.heads.0.weight": 10,
        "dispnetres.decoder.upsamplers.5.weight": 11,
        "dispnetres.decoder.iconvs.5.weight": 12,
        "dispnetres.decoder.heads.5.weight": 13,
        "dispnetres.decoder.head6.weight": 14,
        "dispnetres.conv3_1.conv2.bias": 15,
    }
    # Every mapped name exists in our model.
    with torch.device("meta"):
        keys = set(create_model("fadnetpp_micro").state_dict())
    assert set(mapped) <= keys


def test_stereo_module_trains_fadnetpp_micro_on_synthetic_sceneflow(tmp_path):
    L.seed_everything(0)
    data = SceneFlowDataModule(
        root=None,
        synthetic_dir=str(tmp_path / "sceneflow"),
        synthetic_options={
            "subsets": ("FlyingThings3D",),
            "num_sequences": 1,
            "num_test_sequences": 1,
            "frames_per_sequence": 2,
            "height": 80,
            "width": 144,
            "anti_alias": 1,
        },
        subsets=("FlyingThings3D",),
        crop_size=(64, 128),
        batch_size=2,
        num_workers=0,
    )
    rounds = [LossRound(weights=[0.32, 0.16, 0.08, 0.04, 0.02, 0.01, 0.005], epochs=2)]
    module = StereoModule(create_model("fadnetpp_micro"), loss_rounds=rounds, lr=1e-3, log_images=False)
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "val/epe" in trainer.callback_metrics
    after = module.net.state_dict()
    assert not torch.equal(after["cunet.conv3_1.conv1.conv.weight"], before["cunet.conv3_1.conv1.conv.weight"])


def test_sceneflow_config_builds_the_ratio_16_model_with_the_fadnetpp_recipe():
    config = Path(__file__).parents[2] / "configs" / "fadnetpp_sceneflow.yaml"
    cli = main(["--config", str(config)], run=False)
    assert isinstance(cli.model.net, FADNetPP)
    assert n_params(cli.model.net) == OFFICIAL_PARAMS["fadnetpp"]
    assert cli.model.net.max_disp == 192
    assert cli.model.hparams.lr == pytest.approx(4e-3) and cli.model.hparams.amsgrad
    assert [r.epochs for r in cli.model.loss_rounds] == [20, 20, 20, 30]
    assert tuple(cli.datamodule.crop_size) == (384, 768)
    assert cli.trainer.max_epochs == 90


@pytest.mark.gpu
def test_fadnetpp_on_cuda_matches_cpu():
    torch.manual_seed(0)
    net = create_model("fadnetpp_tiny").eval()
    left, right = torch.rand(2, 3, 128, 384), torch.rand(2, 3, 128, 384)
    with torch.no_grad():
        cpu = net(left, right)["disparity"]
        gpu = net.cuda()(left.cuda(), right.cuda())["disparity"].cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)
