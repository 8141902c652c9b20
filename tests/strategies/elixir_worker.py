"""Run as a script (not under pytest): GPT-2 or a CNN trained by ``Trainer(strategy=...)`` on 1-2 CPU processes.

Lightning's subprocess launcher re-runs this file for rank 1. Every rank saves to ``<out>/rank<r>.pt``: the losses
of every step, the final weights (plain fp32 tensors: ElixirStrategy hands the module back un-chunked), Elixir's
plan, cache statistics and budget, and the path of the checkpoint it wrote (if asked).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_hpml.datamodules.text import TokenStreamDataModule
from lightning_hpml.modules.language import GPT2LMModule
from lightning_hpml.strategies import ElixirStrategy
from lightning_hpml.strategies.elixir import ElixirPrecision


class SmallCNN(L.LightningModule):
    """A stem and four equal 32-channel conv-BN-ReLU layers (no parameter dominates), linear head; SGD momentum."""

    def __init__(self) -> None:
        super().__init__()
        layers, width = [], 3
        for i in range(5):
            layers += [nn.Conv2d(width, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()]
            if i in (1, 3):
                layers.append(nn.MaxPool2d(2))
            width = 32
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(32 * 4 * 4, 10)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.head(self.features(x).flatten(1)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 3, 16, 16, generator=g)
        y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
        return DataLoader(TensorDataset(x, y), batch_size=16)


class GPT2Seeded(GPT2LMModule):
    """Same initial weights whatever RNG the strategy consumed before ``configure_model``."""

    def configure_model(self) -> None:
        torch.manual_seed(1234)
        super().configure_model()


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def model_state_bytes(model: nn.Module) -> int:
    """fp32 weights + gradients + two Adam moments: 16 bytes per parameter."""
    return 16 * sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", choices=["gpt2", "cnn"], default="gpt2")
    parser.add_argument("--strategy", choices=["elixir", "ddp"], default="elixir")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--budget-frac", type=float, default=None, help="device budget as a fraction of model state")
    parser.add_argument("--offload", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--fp16", action="store_true", help="Elixir with fp16 compute and dynamic loss scaling")
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--clip", type=float, default=0.0)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--save-at", type=int, default=0, help="save a checkpoint after this many steps")
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--epoch-steps", type=int, default=None, help="limit_train_batches (epoch length)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    if args.model == "gpt2":
        model = GPT2Seeded("gpt2_tiny", max_len=64)
        data = TokenStreamDataModule(seq_len=32, batch_size=4, synthetic_tokens=8192)
        probe = GPT2LMModule("gpt2_tiny", max_len=64)
        probe.configure_model()
    else:
        model, data, probe = SmallCNN(), None, SmallCNN()
    limit = None if args.budget_frac is None else int(args.budget_frac * model_state_bytes(probe))
    if args.strategy == "elixir":
        plugin = ElixirPrecision("16-mixed", init_scale=2.0**10) if args.fp16 else None
        strategy = ElixirStrategy(
            device_memory_limit=limit, offload=args.offload, print_plan=False, precision_plugin=plugin
        )
    else:
        strategy = "ddp"
    recorder = LossRecorder()
    callbacks: list[L.Callback] = [recorder]
    if args.save_at:
        callbacks.append(
            L.pytorch.callbacks.ModelCheckpoint(
                dirpath=args.out / "ckpt", every_n_train_steps=args.save_at, save_top_k=-1, filename="{step}"
            )
        )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=strategy,
        precision=None if args.fp16 else args.precision,
        max_steps=args.max_steps,
        gradient_clip_val=args.clip or None,
        accumulate_grad_batches=args.accumulate,
        logger=False,
        enable_checkpointing=bool(args.save_at),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        limit_val_batches=0,
        limit_train_batches=args.epoch_steps,
    )
    trainer.fit(model, datamodule=data, ckpt_path=args.resume)
    rank = trainer.global_rank
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "losses": recorder.losses,
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "global_step": trainer.global_step,
        "limit": limit,
    }
    if isinstance(trainer.strategy, ElixirStrategy):
        result["stats"] = trainer.strategy.stats
        result["plan"] = trainer.strategy.plan.to_dict()
        scaler = trainer.strategy.precision_plugin.scaler
        result["loss_scale"] = None if scaler is None else scaler.state_dict()
    torch.save(result, args.out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
