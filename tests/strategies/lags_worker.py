"""Run as a script (not under pytest): a small model trained by ``Trainer(strategy=...)`` on 2-4 CPU processes.

Lightning's subprocess launcher re-runs this file for ranks 1..N-1. Every rank saves what the tests compare to
``<out>/rank<r>.pt``: final and initial parameters, the sum of its local (pre-exchange) gradients, its LAGS
residuals, the density plan, the density sent at each step, post-clipping gradient norms and the logged LAGS
statistics.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_hpml.strategies import LAGSStrategy


class TinyRegressor(L.LightningModule):
    """Linear-BatchNorm-ReLU-Linear regression; records local gradients and the clipped norms."""

    def __init__(self, lr: float, momentum: float, fail_rank: int, fail_step: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Linear(48, 24), nn.ReLU())
        self.head = nn.Linear(24, 4)
        self.lr, self.momentum = lr, momentum
        self.fail_rank, self.fail_step = fail_rank, fail_step
        self.grad_sum = {name: torch.zeros_like(p) for name, p in self.named_parameters()}
        self.clipped_norms: list[float] = []
        self.step_densities: dict[int, float] = {}  # reducer step -> density it sent (ExchangeStats)
        for name, p in self.named_parameters():
            p.register_hook(self._recorder(name))

    def _recorder(self, name: str):
        def record(grad: torch.Tensor) -> None:  # returns None: a returned tensor would replace the gradient
            self.grad_sum[name].add_(grad.detach())

        return record

    def training_step(self, batch, batch_idx):
        if self.global_rank == self.fail_rank and self.global_step == self.fail_step:
            raise RuntimeError(f"injected failure on rank {self.global_rank} at step {self.global_step}")
        x, y = batch
        return nn.functional.mse_loss(self.head(self.net(x)), y)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        reducer = getattr(self.trainer.strategy, "reducer", None)
        if reducer is not None and reducer.last_stats is not None:
            self.step_densities[reducer.step - 1] = reducer.last_stats.density

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad.detach().float().flatten() for p in self.parameters() if p.grad is not None]
        self.clipped_norms.append(float(torch.cat(grads).norm()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)


def make_data(samples: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(samples, 16, generator=generator)
    y = torch.tanh(x[:, :4] * 2.0) + 0.1 * torch.randn(samples, 4, generator=generator)
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategy", default="lags", choices=["lags", "ddp"])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--adaptive", action="store_true")
    parser.add_argument("--density-warmup-steps", type=int, default=0)
    parser.add_argument("--group-threshold", type=int, default=0)
    parser.add_argument("--dense-below", type=int, default=0)
    parser.add_argument("--dense-below-bits", type=int, default=32)
    parser.add_argument("--sparse-values", default="float32")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--batches-per-epoch", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--fail-rank", type=int, default=-1)
    parser.add_argument("--fail-step", type=int, default=-1)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    timeout = timedelta(seconds=args.timeout_s)
    if args.strategy == "ddp":
        strategy = L.pytorch.strategies.DDPStrategy(timeout=timeout)
    else:
        strategy = LAGSStrategy(
            density=args.density,
            adaptive=args.adaptive,
            density_warmup_steps=args.density_warmup_steps,
            group_threshold=args.group_threshold,
            dense_below=args.dense_below,
            dense_below_bits=args.dense_below_bits,
            sparse_values=args.sparse_values,
            warmup_steps=1,
            profile_steps=2,
            probe_bytes=(4096, 65536),
            timeout=timeout,
        )
    model = TinyRegressor(args.lr, args.momentum, args.fail_rank, args.fail_step)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    samples = args.batches_per_epoch * args.batch_size * args.devices * args.accumulate
    loader = DataLoader(make_data(samples), batch_size=args.batch_size, shuffle=True)
    callbacks = []
    if args.checkpoint_every:
        callbacks.append(
            ModelCheckpoint(dirpath=args.out / "checkpoints", every_n_train_steps=args.checkpoint_every, save_top_k=-1)
        )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=strategy,
        max_steps=args.max_steps,
        accumulate_grad_batches=args.accumulate,
        gradient_clip_val=args.clip,
        precision=args.precision,
        logger=L.pytorch.loggers.CSVLogger(args.out, name="logs", version=0),
        log_every_n_steps=1,
        callbacks=callbacks,
        enable_checkpointing=bool(args.checkpoint_every),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, loader, ckpt_path=args.resume)

    reducer = getattr(trainer.strategy, "reducer", None)
    torch.save(
        {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "params": {name: p.detach().clone() for name, p in model.named_parameters()},
            "buffers": {name: b.clone() for name, b in model.named_buffers()},
            "initial": initial,
            "grad_sum": model.grad_sum,
            "residuals": reducer.state_dict()["residuals"] if reducer is not None else {},
            "densities": list(reducer.densities) if reducer is not None else [],
            "group_names": [g.names for g in reducer.groups] if reducer is not None else [],
            "reducer_step": reducer.step if reducer is not None else None,
            "step_densities": model.step_densities,
            "clipped_norms": model.clipped_norms,
            "logged": {k: float(v) for k, v in trainer.logged_metrics.items()},
        },
        args.out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main()
