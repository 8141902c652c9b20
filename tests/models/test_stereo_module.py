"""StereoModule pieces: evaluation padding, fine-tune initialisation, the round-reset learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from lightning_hpml.modules import create_model
from lightning_hpml.modules.stereo import LossRound, StereoModule
from lightning_hpml.modules.stereo.stereo_module import pad_to_multiple


def test_pad_to_multiple_pads_bottom_right_by_replication():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 4)
    torch.testing.assert_close(padded[..., :2, :3], x)
    assert padded[0, 0, 3, 3] == x[0, 0, 1, 2]


def test_predict_disparity_returns_native_resolution():
    module = StereoModule(create_model("fadnet_tiny"))
    out = module.predict_disparity(torch.rand(1, 3, 70, 150), torch.rand(1, 3, 70, 150))
    assert out["disparity"].shape == (1, 1, 70, 150)
    assert out["stage1"].shape == (1, 1, 70, 150)


def test_init_ckpt_path_loads_net_weights_strictly(tmp_path):
    source = StereoModule(create_model("fadnet_tiny"))
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    target = StereoModule(create_model("fadnet_tiny"), init_ckpt_path=str(path))
    assert not torch.equal(target.net.dispnetc.conv1[0].weight, source.net.dispnetc.conv1[0].weight)
    target.setup("fit")
    for (name, a), b in zip(target.net.state_dict().items(), source.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    wrong = StereoModule(create_model("fadnet_w025"), init_ckpt_path=str(path))
    with pytest.raises(RuntimeError, match="size mismatch"):
        wrong.setup("fit")


def test_learning_rate_halves_within_a_round_and_resets_at_the_next():
    module = StereoModule(
        create_model("fadnet_tiny"), loss_rounds=[LossRound([1.0], 5), LossRound([1.0], 5)], lr=1.0, lr_halving_epochs=2
    )
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(8):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 1.0, 1.0, 0.5]


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="lr"):
        StereoModule(create_model("fadnet_tiny"), lr=0.0)
    with pytest.raises(ValueError, match="loss_rounds"):
        StereoModule(create_model("fadnet_tiny"), loss_rounds=[])
