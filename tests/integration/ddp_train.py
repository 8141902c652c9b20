"""Run as a script (not under pytest): DDP on CPU with 2 processes training a tiny FADNet on synthetic data.

Lightning's ``ddp`` strategy re-launches this script for rank 1, so it must be an importable file. Each rank writes
a JSON summary that the test compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

from lightning_hpml.datamodules.stereo import SceneFlowDataModule
from lightning_hpml.modules.stereo import FADNet, LossRound, StereoModule


class RecordSamples(L.Callback):
    """Remember which samples this rank trained on."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.names.extend(batch["name"])


def main(out_dir: Path) -> None:
    L.seed_everything(0)
    data = SceneFlowDataModule(
        root=None,
        synthetic_dir=str(out_dir / "sceneflow"),
        crop_size=(64, 128),
        batch_size=2,
        num_workers=0,
        synthetic_options={"height": 96, "width": 192},
    )
    model = StereoModule(
        FADNet(width=0.0625),
        loss_rounds=[LossRound([1.0, 0.5, 0.25, 0.1, 0.1, 0.1, 0.1], 2)],
        lr=1e-3,
        log_images=False,
    )
    recorder = RecordSamples()
    trainer = L.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[recorder],
        default_root_dir=str(out_dir),
    )
    trainer.fit(model, datamodule=data)
    checksum = float(sum(p.double().sum() for p in model.parameters()))
    summary = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "global_step": trainer.global_step,
        "checksum": checksum,
        "val_epe": float(trainer.callback_metrics["val/epe"]),
        "train_loss": float(trainer.callback_metrics["train/loss"]),
        "names": recorder.names,
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
    }
    (out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
