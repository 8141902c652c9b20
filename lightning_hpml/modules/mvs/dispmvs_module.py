"""``DispMVSModule``: trains and evaluates DispMVS on multi-view batches (DTU, the synthetic DTU tree, ...).

Batch keys read (``shared/DESIGN.md``): ``images`` (B, V, 3, H, W) in [0, 1], ``intrinsics`` (B, V, 3, 3),
``extrinsics`` (B, V, 4, 4) world-to-camera, ``depth_range`` (B, 2); for training, validation and test also ``depth``
(B, 1, H, W) and ``valid`` (B, 1, H, W) bool. Logs ``train/loss``, ``train/abs_err``; ``val/abs_err`` and
``val/within_<t>`` (percent of valid pixels with error below each threshold, see
:class:`~lightning_hpml.metrics.MVSDepthMetrics`), the same under ``test/``. ``predict_step`` returns ``depth`` and
``confidence``; :class:`~lightning_hpml.callbacks.MVSPredictionWriter` saves them and fuses point clouds.

Loss (official ``loss.py``): L1 between predicted and ground-truth normalised inverse depth over valid pixels, for
every iteration of both stages, weighted ``0.9**i`` for the ``i``-th iteration of a stage (earlier iterations weigh
more; the weight restarts at 1 for the fine stage). The coarse stage is compared at 1/4 resolution with the ground
truth and mask subsampled by nearest neighbour. Optimiser (``train_dtu_aug.sh``): Adam, lr 2e-4, MultiStepLR at epochs
10, 12, 14 with gamma 0.5 over 16 epochs. The official script calls ``clip_grad_norm_`` before ``backward`` (no
effect); use the Trainer's ``gradient_clip_val`` to clip for real.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.metrics.mvs_depth import MVSDepthMetrics
from lightning_hpml.modules.mvs.dispmvs import DispMVS, normalised_inverse_depth

__all__ = ["DispMVSModule", "dispmvs_loss"]


def _stage_loss(predictions: list[Tensor], target: Tensor, valid: Tensor, decay: float) -> Tensor:
    return sum(decay**i * (prediction - target)[valid].abs().mean() for i, prediction in enumerate(predictions))


def dispmvs_loss(
    output: dict, depth: Tensor, valid: Tensor, depth_range: Tensor, iteration_decay: float = 0.9
) -> Tensor:
    """DispMVS's loss for a network ``output`` (``coarse``/``fine`` lists) against ground-truth ``depth``."""
    valid = valid & (depth > 0)
    if not valid.any():
        raise ValueError("dispmvs_loss: the batch has no valid ground-truth depth pixel")
    target = normalised_inverse_depth(depth, depth_range)
    coarse_size = output["coarse"][0].shape[-2:]
    coarse_target = F.interpolate(target, size=coarse_size, mode="nearest")
    coarse_valid = F.interpolate(valid.float(), size=coarse_size, mode="nearest") > 0.5
    loss = _stage_loss(output["coarse"], coarse_target, coarse_valid, iteration_decay)
    if output["fine"]:
        loss = loss + _stage_loss(output["fine"], target, valid, iteration_decay)
    return loss


class DispMVSModule(L.LightningModule):
    """Args:
    net: The network (default: :class:`DispMVS` at full width).
    lr: Adam learning rate (2e-4).
    milestones, gamma: MultiStepLR epochs and factor.
    iteration_decay: Loss weight factor per later iteration (0.9).
    thresholds: Depth-error thresholds of the ``within_<t>`` metrics, in scene units (DTU: 1, 2, 4 mm).
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        lr: float = 2e-4,
        milestones: Sequence[int] = (10, 12, 14),
        gamma: float = 0.5,
        iteration_decay: float = 0.9,
        thresholds: Sequence[float] = (1.0, 2.0, 4.0),
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"`lr` must be positive, got {lr!r}")
        self.save_hyperparameters(ignore=["net"])
        self.net = net if net is not None else DispMVS()
        self.lr, self.milestones, self.gamma = lr, list(milestones), gamma
        self.iteration_decay = iteration_decay
        self.train_metrics = MVSDepthMetrics(thresholds)
        self.val_metrics = MVSDepthMetrics(thresholds)
        self.test_metrics = MVSDepthMetrics(thresholds)

    def forward(self, batch: dict) -> dict:
        return self.net(batch["images"], batch["intrinsics"], batch["extrinsics"], batch["depth_range"])

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        output = self(batch)
        loss = dispmvs_loss(output, batch["depth"], batch["valid"], batch["depth_range"], self.iteration_decay)
        batch_size = batch["images"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.train_metrics.update(output["depth"].detach(), batch["depth"], batch["valid"])
        self.log("train/abs_err", self.train_metrics.compute()["abs_err"], prog_bar=True, batch_size=batch_size)
        self.train_metrics.reset()
        return loss

    def _evaluate(self, batch: dict, metric: MVSDepthMetrics) -> None:
        metric.update(self(batch)["depth"], batch["depth"], batch["valid"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute().items()}, prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self.test_metrics.compute().items()})
        self.test_metrics.reset()

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        output = self(batch)
        return {"depth": output["depth"], "confidence": output["confidence"]}

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, self.milestones, self.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
