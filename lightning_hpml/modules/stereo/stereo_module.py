"""LightningModule for supervised stereo disparity networks (FADNet and relatives).

Batch keys read (see ``shared/DESIGN.md``): ``left``, ``right`` ``(B, 3, H, W)`` float in [0, 1]; for training,
validation and test also ``disparity`` ``(B, 1, H, W)`` in pixels and ``valid`` ``(B, 1, H, W)`` bool; for prediction
``name`` (the relative output path stem of each sample).

The injected ``net`` takes ``(left, right)`` and returns a dict with ``disparity`` (final full-resolution prediction)
and, for training, lists of multi-scale predictions (finest first) under the keys in ``supervised_outputs``.

Evaluation pads the images on the bottom and right (edge replication) to a multiple of the net's ``size_divisor``
and crops the prediction back, so metrics are computed at the dataset's native resolution. (The official FADNet
resizes 540x960 to 576x960 instead; padding avoids resampling the ground truth and is what OpenStereo does.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from lightning_hpml.metrics import EndPointError, stereo_metric_collection
from lightning_hpml.modules.stereo.losses import (
    FADNET_SCENEFLOW_ROUNDS,
    LossRound,
    MultiScaleDisparityLoss,
    round_at_epoch,
)
from lightning_hpml.viz import stereo_panel

__all__ = ["StereoModule", "pad_to_multiple"]


def pad_to_multiple(x: Tensor, divisor: int) -> Tensor:
    """Replicate-pad ``(B, C, H, W)`` on the bottom and right so ``H`` and ``W`` are multiples of ``divisor``."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % divisor, (-w) % divisor
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


class StereoModule(L.LightningModule):
    """Trains a disparity network with FADNet's recipe: multi-scale SmoothL1 in rounds, Adam(amsgrad), round-reset LR.

    Args:
        net: The disparity network (e.g. :class:`lightning_hpml.modules.stereo.FADNet`).
        loss_rounds: Loss-weight rounds; defaults to FADNet's Scene Flow schedule (4 rounds, 90 epochs).
        lr: Base learning rate of each round.
        lr_halving_epochs: The learning rate halves every this many epochs within a round.
        betas: Adam betas.
        amsgrad: Use AMSGrad (the official recipe does).
        image_max_disp: Colour-map range (pixels) of logged disparity images; None scales each image to its own
            ground-truth maximum. (Ground-truth validity, including the 192 px cap, is decided by the DataModule.)
        supervised_outputs: Output keys holding multi-scale prediction lists that the loss supervises.
        log_images: Log a (left, prediction, ground truth, error) picture of the first validation batch per epoch.
        init_ckpt_path: Lightning checkpoint whose ``net`` weights initialise the model before training (fine-tuning,
            e.g. KITTI from Scene Flow). Resuming with ``ckpt_path`` restores everything afterwards as usual.

    The network is injected, not stored in the hyper-parameters, so reloading a checkpoint outside the CLI takes it
    again: ``StereoModule.load_from_checkpoint(path, net=FADNet(width=0.25))`` (``hpml ... --ckpt_path`` rebuilds it
    from the config).
    """

    def __init__(
        self,
        net: nn.Module,
        loss_rounds: Sequence[LossRound] | None = None,
        lr: float = 1e-4,
        lr_halving_epochs: int = 10,
        betas: tuple[float, float] = (0.9, 0.999),
        amsgrad: bool = True,
        image_max_disp: float | None = None,
        supervised_outputs: Sequence[str] = ("stage1", "stage2"),
        log_images: bool = True,
        init_ckpt_path: str | None = None,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"`lr` must be positive, got {lr!r}")
        if lr_halving_epochs < 1:
            raise ValueError(f"`lr_halving_epochs` must be >= 1, got {lr_halving_epochs!r}")
        self.save_hyperparameters(ignore=["net"])
        # Settings are read from attributes, not ``self.hparams``: under LightningCLI a subclass's hparams hold only
        # its own signature's arguments.
        self.lr, self.lr_halving_epochs, self.betas, self.amsgrad = lr, lr_halving_epochs, tuple(betas), amsgrad
        self.image_max_disp, self.log_images, self.init_ckpt_path = image_max_disp, log_images, init_ckpt_path
        self.supervised_outputs = tuple(supervised_outputs)
        self.net = net
        self.loss_rounds = list(loss_rounds) if loss_rounds is not None else list(FADNET_SCENEFLOW_ROUNDS)
        if not self.loss_rounds:
            raise ValueError("`loss_rounds` must contain at least one round")
        self.size_divisor = int(getattr(net, "size_divisor", 1))
        self.criterion = MultiScaleDisparityLoss()
        self.train_epe = EndPointError()
        self.val_metrics = stereo_metric_collection(prefix="val/")
        self.val_epe_stage1 = EndPointError()
        self.test_metrics = stereo_metric_collection(prefix="test/")

    def forward(self, left: Tensor, right: Tensor) -> dict[str, Any]:
        return self.net(left, right)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.init_ckpt_path:
            self.load_net_weights(self.init_ckpt_path)

    def load_net_weights(self, path: str) -> None:
        """Load the ``net.*`` weights of a Lightning checkpoint (strictly: every key must match)."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if "state_dict" not in checkpoint:
            raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict' entry)")
        net_state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
        if not net_state:
            raise ValueError(f"{path}: checkpoint has no 'net.*' weights")
        self.net.load_state_dict(net_state, strict=True)

    def current_loss_weights(self) -> list[float]:
        index, _ = round_at_epoch(self.loss_rounds, self.current_epoch)
        return list(self.loss_rounds[index].weights)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self.net(batch["left"], batch["right"])
        weights = self.current_loss_weights()
        target, valid = batch["disparity"], batch["valid"]
        loss = sum(self.criterion(out[key], target, valid, weights) for key in self.supervised_outputs)
        self.train_epe(out["disparity"].detach(), target, valid)
        batch_size = target.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.log("train/epe", self.train_epe, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/round", float(round_at_epoch(self.loss_rounds, self.current_epoch)[0]), batch_size=batch_size)
        return loss

    def predict_disparity(self, left: Tensor, right: Tensor) -> dict[str, Any]:
        """Run the net on inputs padded to its size divisor and crop its full-resolution outputs back.

        Every output tensor of the padded size (``disparity``, and e.g. ``normal``) is cropped; of each multi-scale
        list in ``supervised_outputs`` the finest scale is kept, cropped.
        """
        h, w = left.shape[-2:]
        padded_left, padded_right = pad_to_multiple(left, self.size_divisor), pad_to_multiple(right, self.size_divisor)
        padded_size = padded_left.shape[-2:]
        out = self.net(padded_left, padded_right)
        cropped = {}
        for key, value in out.items():
            if isinstance(value, Tensor) and value.shape[-2:] == padded_size:
                cropped[key] = value[..., :h, :w]
            elif key in self.supervised_outputs:
                cropped[key] = value[0][..., :h, :w]
        return cropped

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.predict_disparity(batch["left"], batch["right"])
        self.val_metrics.update(out["disparity"], batch["disparity"], batch["valid"])
        if "stage1" in out:
            self.val_epe_stage1.update(out["stage1"], batch["disparity"], batch["valid"])
        if batch_idx == 0 and self.log_images:
            self._log_panel(batch, out["disparity"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()
        if self.val_epe_stage1.update_count:
            self.log("val/epe_stage1", self.val_epe_stage1.compute())
            self.val_epe_stage1.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.predict_disparity(batch["left"], batch["right"])
        self.test_metrics.update(out["disparity"], batch["disparity"], batch["valid"])

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        out = self.predict_disparity(batch["left"], batch["right"])
        return {"disparity": out["disparity"], "name": batch.get("name")}

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier at ``epoch``: halved every ``lr_halving_epochs``, restarted with each loss round."""
        _, epoch_in_round = round_at_epoch(self.loss_rounds, epoch)
        return 0.5 ** (epoch_in_round // self.lr_halving_epochs)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas, amsgrad=self.amsgrad)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: self.lr_factor(epoch))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def _log_panel(self, batch: dict[str, Any], pred: Tensor) -> None:
        if not isinstance(self.logger, TensorBoardLogger) or self.trainer.sanity_checking:
            return
        panel = stereo_panel(
            batch["left"][0],
            pred[0, 0],
            batch["disparity"][0, 0],
            batch["valid"][0, 0],
            max_disp=self.image_max_disp,
        )
        self.logger.experiment.add_image("val/disparity", panel, self.global_step, dataformats="HWC")
