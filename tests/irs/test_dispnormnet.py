"""NormNetS, disp2norm, DispNormNet / DTN-Net (exact parameter counts) and DispNormModule training on synthetic IRS."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from lightning_hpml.datamodules.stereo import IRSDataModule
from lightning_hpml.modules import create_model
from lightning_hpml.modules.stereo import DispNetC, DispNormModule, DispNormNet, DTNNet, LossRound, NormNetS, disp2norm


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "expected"), [("dispnormnet", 144_264_272), ("dtnnet", 144_273_680)])
def test_full_size_parameter_counts_match_the_official_models(name: str, expected: int):
    with torch.device("meta"):
        model = create_model(name)
        assert _count(model) == expected
        assert _count(model.dispnetc) == 71_982_720
        assert _count(NormNetS(10)) == 72_290_960
        assert _count(NormNetS(10)) - _count(NormNetS(7)) == 3 * 64 * 7 * 7


def _plane_disparity(alpha: float, beta: float, gamma: float, h: int, w: int, cx: float, cy: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (alpha * (xs - cx) + beta * (ys - cy) + gamma).view(1, 1, h, w)


def test_disp2norm_is_exact_for_a_plane_slanted_along_x():
    f, h, w = 480.0, 12, 16
    alpha, gamma = 0.4, 30.0  # d = alpha (x - cx) + gamma: normal ~ -(f alpha, 0, gamma)
    normal = disp2norm(_plane_disparity(alpha, 0.0, gamma, h, w, w / 2, h / 2), f, f)
    expected = -torch.tensor([f * alpha, 0.0, gamma], dtype=torch.float64)
    expected = expected / expected.norm()
    torch.testing.assert_close(
        normal[0, :, 1:-1, 1:-1], expected.view(3, 1, 1).expand(3, h - 2, w - 2), atol=2e-6, rtol=0
    )


def test_disp2norm_general_plane_is_exact_at_the_principal_point_and_faces_the_camera():
    f, h, w = 480.0, 20, 24
    alpha, beta, gamma = -0.3, 0.5, 25.0
    normal = disp2norm(_plane_disparity(alpha, beta, gamma, h, w, w / 2, h / 2), f, f)
    expected = -torch.tensor([f * alpha, f * beta, gamma], dtype=torch.float64)
    torch.testing.assert_close(normal[0, :, h // 2, w // 2], expected / expected.norm(), atol=2e-6, rtol=0)
    torch.testing.assert_close(normal.norm(dim=1), torch.ones(1, h, w, dtype=torch.float64), atol=1e-5, rtol=0)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ray = torch.stack(((xs - w / 2) / f, (ys - h / 2) / f, torch.ones_like(xs)))
    assert ((normal[0] * ray).sum(0) <= 1e-5).all()
    with pytest.raises(ValueError, match="disparity"):
        disp2norm(torch.ones(1, 2, 8, 8), f, f)


@pytest.mark.parametrize("cls", [DispNormNet, DTNNet])
def test_forward_outputs(cls):
    torch.manual_seed(0)
    net = cls(width=0.0625).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128))
    assert out["disparity"].shape == (2, 1, 64, 128) and len(out["stage1"]) == 7
    assert out["stage1"][6].shape == (2, 1, 1, 2)
    assert out["normal"].shape == (2, 3, 64, 128)
    torch.testing.assert_close(out["normal"].norm(dim=1), torch.ones(2, 64, 128), atol=1e-4, rtol=0)
    assert ("init_normal" in out) == (cls is DTNNet)
    assert isinstance(net.dispnetc, DispNetC)
    with pytest.raises(ValueError, match="divisible by 64"):
        net(torch.rand(1, 3, 60, 128), torch.rand(1, 3, 60, 128))


def test_dtnnet_feeds_disp2norm_of_its_disparity_to_normnet():
    torch.manual_seed(0)
    net = DTNNet(width=0.0625).eval()
    seen = {}
    net.normnets.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert seen["x"].shape[1] == 10
    torch.testing.assert_close(seen["x"][:, 6:9], disp2norm(out["disparity"] + 0.01, 480.0, 480.0))
    torch.testing.assert_close(seen["x"][:, 9:], out["disparity"])


def test_normal_loss_uses_only_valid_pixels():
    pred = torch.zeros(1, 3, 2, 2)
    target = torch.ones(1, 3, 2, 2)
    valid = torch.tensor([[[[True, False], [False, False]]]])
    target[..., 0, 1] = 100.0
    assert DispNormModule.normal_loss(pred, target, valid).item() == 1.0
    assert DispNormModule.normal_loss(pred, target, torch.zeros_like(valid)).item() == 0.0


def test_short_training_on_synthetic_irs_learns_and_logs_normal_metrics(tmp_path):
    dm = IRSDataModule(
        root=None,
        synthetic_dir=str(tmp_path / "irs"),
        synthetic_options={"height": 64, "width": 128, "frames_per_scene": 2},
        crop_size=(64, 128),
        batch_size=2,
        num_workers=0,
        augment=False,
    )
    module = DispNormModule(
        create_model("dtnnet_tiny"),
        loss_rounds=[LossRound([1.0, 0.5, 0.25, 0, 0, 0, 0], 10)],
        lr=2e-3,
        log_images=False,
    )
    assert module.hparams.normal_loss_weight == 3.0 and list(module.hparams.supervised_outputs) == ["stage1"]
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module.train()

    def normal_loss() -> float:
        with torch.no_grad():
            out = module.net(batch["left"], batch["right"])
            return DispNormModule.normal_loss(out["normal"], batch["normal"], batch["normal_valid"]).item()

    before = normal_loss()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=4,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    L.seed_everything(0)
    trainer.fit(module, datamodule=dm)
    metrics = trainer.callback_metrics
    for key in (
        "val/epe",
        "val/normal_mean_deg",
        "val/normal_median_deg",
        "val/normal_within_11_25",
        "train/normal_loss",
    ):
        assert key in metrics and math.isfinite(float(metrics[key])), key
    assert 0.0 <= float(metrics["val/normal_within_30"]) <= 1.0
    module.train()
    assert normal_loss() < before


@pytest.mark.parametrize(("config", "cls"), [("dispnormnet_irs.yaml", DispNormNet), ("dtnnet_irs.yaml", DTNNet)])
def test_configs_hold_the_official_recipe(config: str, cls: type, tmp_path):
    from pathlib import Path

    from lightning_hpml.cli import main

    path = Path(__file__).resolve().parents[2] / "configs" / config
    cli = main(
        [
            "--config",
            str(path),
            "--model.init_args.net.init_args.width=0.0625",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.callbacks=[]",
        ],
        run=False,
    )
    module, data = cli.model, cli.datamodule
    assert isinstance(module, DispNormModule) and type(module.net) is cls
    assert isinstance(data, IRSDataModule) and data.crop_size == (384, 768) and data.focal == 480.0
    assert module.hparams.lr == 1e-4 and module.hparams.amsgrad and module.hparams.normal_loss_weight == 3.0
    assert [r.epochs for r in module.loss_rounds] == [20, 20, 20, 30]
    assert module.loss_rounds[0].weights == [0.32, 0.16, 0.08, 0.04, 0.02, 0.01, 0.005]
    assert list(module.hparams.supervised_outputs) == ["stage1"]
    assert cli.trainer.max_epochs == 90
