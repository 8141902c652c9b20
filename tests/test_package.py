"""Package surface: strategy-name registration with Lightning, and every shipped config instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

import lightning_hpml
from lightning_hpml import strategies
from lightning_hpml.cli import main

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


class _ProbeStrategy(DDPStrategy):
    strategy_name = "hpml_probe_ddp"

    @classmethod
    def register_strategies(cls, registry) -> None:
        registry.register(cls.strategy_name, cls, description="test-only DDP preset", find_unused_parameters=True)


def test_register_all_adds_names_once_and_trainer_resolves_them(monkeypatch):
    monkeypatch.setattr(strategies, "STRATEGY_CLASSES", (_ProbeStrategy,))
    try:
        assert strategies.register_all() == ["hpml_probe_ddp"]
        assert strategies.register_all() == []  # already registered: skipped, no error
        trainer = L.Trainer(strategy="hpml_probe_ddp", accelerator="cpu", devices=1, logger=False)
        assert isinstance(trainer.strategy, _ProbeStrategy)
        assert trainer.strategy._ddp_kwargs == {"find_unused_parameters": True}
    finally:
        StrategyRegistry.remove("hpml_probe_ddp")


def test_package_exposes_models():
    assert "fadnet" in lightning_hpml.list_models()
    assert lightning_hpml.create_model("fadnet_tiny").width == pytest.approx(0.0625)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_instantiate(config: Path):
    cli = main(["--config", str(config)], run=False)
    assert isinstance(cli.model, L.LightningModule)
    assert isinstance(cli.datamodule, L.LightningDataModule)
    if type(cli.datamodule).train_dataloader is L.LightningDataModule.train_dataloader:  # a predict-only config
        assert any(isinstance(c, BasePredictionWriter) for c in cli.trainer.callbacks)
    else:
        assert (cli.trainer.max_epochs or 0) >= 1 or cli.trainer.max_steps >= 1  # a run length is configured


def test_sceneflow_config_reproduces_the_paper_recipe():
    cli = main(["--config", str(Path(__file__).parents[1] / "configs" / "fadnet_sceneflow.yaml")], run=False)
    model = cli.model
    assert sum(p.numel() for p in model.net.parameters()) == 144_303_840
    assert [r.epochs for r in model.loss_rounds] == [20, 20, 20, 30]
    assert model.loss_rounds[0].weights == [0.32, 0.16, 0.08, 0.04, 0.02, 0.01, 0.005]
    assert model.hparams.lr == 1e-4 and model.hparams.amsgrad and model.hparams.lr_halving_epochs == 10
    assert tuple(cli.datamodule.crop_size) == (384, 768)
    assert cli.trainer.max_epochs == 90
