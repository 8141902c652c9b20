"""DispNormNet and DTN-Net - joint disparity and surface-normal estimation - and their LightningModule.

Paper: Wang, Zheng, Yan, Chu, Shi, "IRS: A Large Naturalistic Indoor Robotics Stereo Dataset to Train Deep Models
for Disparity and Surface Normal Estimation", arXiv:1912.09678 (v1: DispNormNet; the ICME 2021 version: DTN-Net).
Official code: https://github.com/HKBU-HPML/IRS (``networks/DToNNet.py``; ``networks/DispNormNet.py`` in the history,
e.g. commit d93a641; ``dltrainer.py`` for the loss). Reimplemented from the facts in
``shared/reference/stereo-models-and-datasets.md`` sections 4.2 and 1.2; no code copied.

- **DispNormNet**: FADNet's residual DispNetC (7 disparity scales) -> NormNetS on ``(left, right, disparity)``
  (7 channels). 144,264,272 parameters at width 1, as the official model.
- **DTN-Net**: DispNetC -> ``disp2norm(d + 0.01, fx, fy)`` (GeoNet-style D2N transform) -> NormNetS on
  ``(left, right, initial normal, disparity)`` (10 channels). 144,273,680 parameters.

Both return a dict: ``disparity`` (full-resolution DispNetC output, ``(B, 1, H, W)``), ``stage1`` (the 7 DispNetC
scales, finest first, supervised by StereoModule's multi-scale loss), ``normal`` (``(B, 3, H, W)`` unit normals in
the camera frame ``x`` right, ``y`` down, ``z`` forward); DTN-Net also ``init_normal``.

Deliberate differences from the official code:

- Inputs are images in [0, 1]; ImageNet mean/std normalisation happens inside the model (as in our FADNet), and the
  normalised images are what DispNetC and NormNetS see (the official loaders normalise before the network).
- The focal length is a constructor argument (``fx = fy = 480`` for IRS) instead of ``set_focal_length``; the
  principal point of ``disp2norm`` is the official ``(W/2, H/2)`` of the (padded) network input, and its output is
  oriented towards the camera (see :func:`~lightning_hpml.modules.stereo.normnet.disp2norm`).
- DispNetC is our FADNet stage 1 (pure-PyTorch correlation), ``width`` scales channels for CPU tests.
- The forward always returns all 7 disparity scales and the normal (official eval returns the finest only).
- Loss (``DispNormModule``): the normal term is ``normal_loss_weight`` (3) x MSE over the pixels of the loader's
  ``normal_valid`` mask (all three components in [-1, 1]); the official code masks single components instead, which
  differs only at pixels where some but not all components are out of range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_hpml.metrics.normal import NormalAngleError
from lightning_hpml.modules.registry import register_model
from lightning_hpml.modules.stereo.dispnet import DispNetC, init_dispnet_weights
from lightning_hpml.modules.stereo.fadnet import IMAGENET_MEAN, IMAGENET_STD
from lightning_hpml.modules.stereo.losses import LossRound, round_at_epoch
from lightning_hpml.modules.stereo.normnet import NormNetS, disp2norm
from lightning_hpml.modules.stereo.stereo_module import StereoModule

__all__ = ["DTNNet", "DispNormModule", "DispNormNet"]

IRS_FOCAL = 480.0
"""IRS focal length in pixels (``fx = fy``)."""


class DispNormNet(nn.Module):
    """DispNetC followed by NormNetS on ``(left, right, disparity)``.

    Args:
        width: Channel multiplier (1.0 = the paper's model).
        corr_displacements: Correlation displacements at 1/8 resolution (40).
        normalize_input: Apply ImageNet mean/std to the [0, 1] inputs.
        focal: Focal length in pixels (used by DTN-Net's ``disp2norm``; kept here so both share a signature).

    Forward inputs ``left``, ``right``: ``(B, 3, H, W)`` in [0, 1], ``H`` and ``W`` divisible by 64.
    """

    size_divisor = 64
    normnet_channels = 7

    def __init__(
        self,
        width: float = 1.0,
        corr_displacements: int = 40,
        normalize_input: bool = True,
        focal: float = IRS_FOCAL,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"`width` must be positive, got {width!r}")
        if corr_displacements < 1:
            raise ValueError(f"`corr_displacements` must be >= 1, got {corr_displacements!r}")
        if not focal > 0:
            raise ValueError(f"`focal` must be a positive number of pixels, got {focal!r}")
        self.width = width
        self.focal = float(focal)
        self.normalize_input = normalize_input
        self.dispnetc = DispNetC(width=width, corr_displacements=corr_displacements)
        self.normnets = NormNetS(in_channels=self.normnet_channels, width=width)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        init_dispnet_weights(self)

    def _check(self, left: Tensor) -> None:
        h, w = left.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f"{type(self).__name__} needs H and W divisible by {self.size_divisor}, got {h}x{w}; pad the input "
                "(DispNormModule does this for evaluation)"
            )

    def _normnet_input(self, left: Tensor, right: Tensor, disparity: Tensor, out: dict[str, Any]) -> Tensor:
        return torch.cat((left, right, disparity), dim=1)

    def forward(self, left: Tensor, right: Tensor) -> dict[str, Any]:
        self._check(left)
        if self.normalize_input:
            left = (left - self.mean) / self.std
            right = (right - self.mean) / self.std
        stage1 = self.dispnetc(left, right)
        out: dict[str, Any] = {"disparity": stage1[0], "stage1": stage1}
        out["normal"] = self.normnets(self._normnet_input(left, right, stage1[0], out))
        return out


class DTNNet(DispNormNet):
    """DTN-Net: DispNetC -> disp2norm initial normal -> NormNetS on ``(left, right, init_normal, disparity)``."""

    normnet_channels = 10

    def _normnet_input(self, left: Tensor, right: Tensor, disparity: Tensor, out: dict[str, Any]) -> Tensor:
        init_normal = disp2norm(disparity + 0.01, self.focal, self.focal)
        out["init_normal"] = init_normal
        return torch.cat((left, right, init_normal, disparity), dim=1)


class DispNormModule(StereoModule):
    """StereoModule for joint disparity + normal networks (DispNormNet, DTN-Net).

    Batch keys read: ``left``, ``right``, ``disparity``, ``valid`` and, when present, ``normal`` ``(B, 3, H, W)``
    and ``normal_valid`` ``(B, 1, H, W)`` (IRS). Loss: FADNet's multi-scale disparity schedule on ``stage1`` plus
    ``normal_loss_weight`` x MSE of the normal over ``normal_valid`` pixels (official: 3 x MSE). Logs
    ``train/normal_loss`` and ``val/normal_mean_deg``, ``val/normal_median_deg``, ``val/normal_within_11_25``, ...
    (``test/`` likewise) besides StereoModule's disparity metrics.

    Args:
        net: A network returning ``disparity``, ``stage1`` and ``normal``.
        normal_loss_weight: Weight of the normal MSE (official: 3, i.e. the per-pixel squared error summed over
            the three components).
        loss_rounds, lr, lr_halving_epochs, betas, amsgrad, image_max_disp, log_images, init_ckpt_path: As
            :class:`~lightning_hpml.modules.stereo.StereoModule`.
        supervised_outputs: Multi-scale disparity outputs supervised (``("stage1",)``).
    """

    def __init__(
        self,
        net: nn.Module,
        normal_loss_weight: float = 3.0,
        loss_rounds: Sequence[LossRound] | None = None,
        lr: float = 1e-4,
        lr_halving_epochs: int = 10,
        betas: tuple[float, float] = (0.9, 0.999),
        amsgrad: bool = True,
        image_max_disp: float | None = None,
        supervised_outputs: Sequence[str] = ("stage1",),
        log_images: bool = True,
        init_ckpt_path: str | None = None,
    ) -> None:
        if not normal_loss_weight >= 0:
            raise ValueError(f"`normal_loss_weight` must be >= 0, got {normal_loss_weight!r}")
        super().__init__(
            net,
            loss_rounds=loss_rounds,
            lr=lr,
            lr_halving_epochs=lr_halving_epochs,
            betas=betas,
            amsgrad=amsgrad,
            image_max_disp=image_max_disp,
            supervised_outputs=supervised_outputs,
            log_images=log_images,
            init_ckpt_path=init_ckpt_path,
        )
        self.val_normal = NormalAngleError()
        self.test_normal = NormalAngleError()

    @staticmethod
    def normal_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """Mean squared error over the components of valid pixels (0 with a graph when none is valid)."""
        mask = valid.expand_as(target)
        if not mask.any():
            return 0.0 * pred.sum()
        return torch.mean((pred[mask] - target[mask]) ** 2)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self.net(batch["left"], batch["right"])
        weights = self.current_loss_weights()
        target, valid = batch["disparity"], batch["valid"]
        disp_loss = sum(self.criterion(out[key], target, valid, weights) for key in self.supervised_outputs)
        loss = disp_loss
        batch_size = target.shape[0]
        if "normal" in batch:
            normal_loss = self.hparams.normal_loss_weight * self.normal_loss(
                out["normal"], batch["normal"], batch["normal_valid"]
            )
            loss = loss + normal_loss
            self.log("train/normal_loss", normal_loss, batch_size=batch_size, sync_dist=True)
        else:
            loss = loss + 0.0 * out["normal"].sum()  # keeps the normal branch in the graph (DDP)
        self.train_epe(out["disparity"].detach(), target, valid)
        self.log("train/disp_loss", disp_loss, batch_size=batch_size, sync_dist=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.log("train/epe", self.train_epe, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/round", float(round_at_epoch(self.loss_rounds, self.current_epoch)[0]), batch_size=batch_size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.predict_disparity(batch["left"], batch["right"])
        self.val_metrics.update(out["disparity"], batch["disparity"], batch["valid"])
        if "normal" in batch:
            self.val_normal.update(out["normal"], batch["normal"], batch["normal_valid"])
        if batch_idx == 0 and self.log_images:
            self._log_panel(batch, out["disparity"])

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.val_normal.update_count:
            self.log_dict({f"val/{k}": v for k, v in self.val_normal.compute().items()})
            self.val_normal.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.predict_disparity(batch["left"], batch["right"])
        self.test_metrics.update(out["disparity"], batch["disparity"], batch["valid"])
        if "normal" in batch:
            self.test_normal.update(out["normal"], batch["normal"], batch["normal_valid"])

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.test_normal.update_count:
            self.log_dict({f"test/{k}": v for k, v in self.test_normal.compute().items()})
            self.test_normal.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        out = self.predict_disparity(batch["left"], batch["right"])
        return {"disparity": out["disparity"], "normal": out["normal"], "name": batch.get("name")}


def _create(cls: type[DispNormNet], **kwargs: Any) -> DispNormNet:
    return cls(**kwargs)


@register_model
def dispnormnet(**kwargs: Any) -> DispNormNet:
    """DispNormNet as in IRS arXiv v1 (144,264,272 parameters)."""
    return _create(DispNormNet, **{"width": 1.0, **kwargs})


@register_model
def dispnormnet_tiny(**kwargs: Any) -> DispNormNet:
    """Tiny DispNormNet (width 1/16) for unit tests."""
    return _create(DispNormNet, **{"width": 0.0625, **kwargs})


@register_model
def dtnnet(**kwargs: Any) -> DTNNet:
    """DTN-Net as in the IRS repository (144,273,680 parameters)."""
    return _create(DTNNet, **{"width": 1.0, **kwargs})


@register_model
def dtnnet_tiny(**kwargs: Any) -> DTNNet:
    """Tiny DTN-Net (width 1/16) for unit tests."""
    return _create(DTNNet, **{"width": 0.0625, **kwargs})
