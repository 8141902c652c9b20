"""FADNet fidelity: parameter counts, output scales, and CPU forward/backward at the paper's test size."""

from __future__ import annotations

import pytest
import torch

from lightning_hpml.modules import create_model, list_models
from lightning_hpml.modules.stereo import DispNetC, DispNetRes, FADNet


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_fadnet_matches_official_parameter_count():
    # Counts measured on the official definitions (reference notes, section 1.3).
    assert n_params(DispNetC()) == 71_982_720
    assert n_params(DispNetRes()) == 72_321_120
    assert n_params(FADNet()) == 144_303_840


def test_full_fadnet_returns_seven_scales_at_384x768():
    net = FADNet().eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 384, 768), torch.rand(1, 3, 384, 768))
    expected = [(384 // 2**k, 768 // 2**k) for k in range(7)]
    for stage in ("stage1", "stage2"):
        assert [tuple(p.shape[-2:]) for p in out[stage]] == expected
    assert out["disparity"].shape == (1, 1, 384, 768)
    assert (out["disparity"] >= 0).all()  # final ReLU


def test_full_fadnet_forward_backward_576x960_on_cpu():
    torch.manual_seed(0)
    net = FADNet()
    left, right = torch.rand(1, 3, 576, 960), torch.rand(1, 3, 576, 960)
    out = net(left, right)
    loss = sum(p.mean() for p in out["stage1"] + out["stage2"])
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_registry_lists_sizes_and_rejects_unknown_names():
    assert {"fadnet", "fadnet_w050", "fadnet_w025", "fadnet_tiny"} <= set(list_models("fadnet*"))
    assert create_model("fadnet_tiny").width == pytest.approx(0.0625)
    assert create_model("fadnet_tiny", width=0.125).width == pytest.approx(0.125)
    with pytest.raises(KeyError, match="fadnet_tiny"):
        create_model("fadnet_huge")


@pytest.mark.parametrize("name", ["fadnet", *list_models("fadnet_*")])
def test_every_fadnet_size_runs_forward_backward_tiny(name):
    net = create_model(name, width=0.0625)
    out = net(torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128))
    sum(p.mean() for p in out["stage1"] + out["stage2"]).backward()
    assert torch.isfinite(out["disparity"]).all()


def test_input_size_not_divisible_by_64_is_rejected_with_hint():
    net = create_model("fadnet_tiny")
    with pytest.raises(ValueError, match="divisible by 64"):
        net(torch.rand(1, 3, 60, 128), torch.rand(1, 3, 60, 128))


@pytest.mark.gpu
def test_fadnet_on_cuda_matches_cpu():
    torch.manual_seed(0)
    net = create_model("fadnet_w025").eval()
    left, right = torch.rand(2, 3, 128, 256), torch.rand(2, 3, 128, 256)
    with torch.no_grad():
        cpu = net(left, right)["disparity"]
        gpu = net.cuda()(left.cuda(), right.cuda())["disparity"].cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)
