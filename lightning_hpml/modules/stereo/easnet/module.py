"""LightningModule training the EASNet supernet with progressive shrinking (HKBU-HPML/EASNet ``train_ofa_stereo.py``).

Facts from the official recipe (``train.sh``, ``train_ofa_stereo.py``, ``ofa/utils/pytorch_utils.py::aanet_loss``);
reimplemented, no code copied. One ``fit`` runs all phases in sequence (the official runs one process per phase,
each loading the previous phase's checkpoint):

=========  ============  ======  ========================  ===================
phase      epochs        lr      elastic dimensions        sub-nets per step
=========  ============  ======  ========================  ===================
large      64            1e-3    none (K7 E8 D4 S4)        1
kernel     2 + 25        5e-4    kernel                    1
depth      2 + 25        5e-4    kernel, depth             2
expand     2 + 25        5e-4    kernel, depth, expand     4
scale      2 + 25        5e-4    all four                  6
=========  ============  ======  ========================  ===================

"2 + 25": the official loop runs ``n_epochs + warmup_epochs`` epochs, and since ``warmup_lr = -1`` is replaced by
``base_lr`` the 2 warm-up epochs run at the constant base rate; then the rate follows a per-step cosine from
``base_lr`` to 0 over the 25 epochs (172 epochs in all). The expand phase starts by sorting the hidden channels by
importance within width bands (``re_organize_middle_weights(expand_ratio_stage=2)``).

Each training step samples ``subnets_per_step`` sub-networks (dimensions that are not elastic stay at their
maximum), back-propagates each one's loss and takes one optimiser step on the summed gradients. The sampling seed is
derived from the global step, so all DDP ranks train the same sub-networks (DDP then needs
``find_unused_parameters=True``: unsampled blocks get no gradient). Adam, weight decay 1e-4 except on BatchNorm and
bias parameters; per phase, warm-up for ``warmup_epochs`` (linear from ``warmup_lr``, constant by default) then
cosine decay to 0, updated every step.

Deliberate differences from the official code:

- All phases run in one ``fit`` (Adam state is reset at each phase start, as a fresh official run would have).
- The "large" phase trains the full supernet with K7 active (its transform matrices get no gradient) instead of a
  separately built K7-only network, so no weight conversion is needed between phases.
- Weight decay is skipped for every BatchNorm parameter and bias (by module type); the official skips parameters
  whose names contain ``bn`` or ``bias``, which misses the BatchNorms inside ``nn.Sequential`` (aggregation fusion
  layers, refinement input convs).
- The learning rate is a function of the fractional epoch (the official warm-up is one step ahead: ``T_cur =
  step + 1``). The official ``large`` branch's undefined-``loss`` bug and ``--task width`` typo do not apply.
- Validation evaluates one sub-network (``eval_config``, default the largest); the official validates three
  (D4 E8 K7 S4, D2 E8 K7 S2, D2 E2 K3 S2) and reports their mean. BatchNorm statistics for validation are
  re-estimated on ``val_bn_batches`` training batches when that is > 0 (the official uses 200 images in batches of
  50) and the training statistics are restored afterwards (the official keeps the re-estimated ones).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.stereo.easnet.supernet import EASNet, SubnetConfig, reestimate_bn
from lightning_hpml.modules.stereo.stereo_module import StereoModule

__all__ = ["EASNET_SCENEFLOW_PHASES", "EASNetModule", "ShrinkPhase", "aanet_loss", "pyramid_weights"]

ELASTIC_DIMS = ("kernel", "depth", "expand", "scale")


@dataclass
class ShrinkPhase:
    """One progressive-shrinking phase."""

    name: str = "large"
    """Label used in logs."""
    epochs: int = 1
    """Number of epochs the phase lasts."""
    lr: float = 1e-3
    """Peak learning rate (after warm-up)."""
    elastic: list[str] = field(default_factory=list)
    """Dimensions sampled in this phase: any of ``kernel``, ``depth``, ``expand``, ``scale``."""
    subnets_per_step: int = 1
    """Sub-networks sampled (and their gradients accumulated) per optimiser step."""
    warmup_epochs: int = 0
    """Warm-up epochs at the start of the phase (included in ``epochs``)."""
    warmup_lr: float | None = None
    """Learning rate at the start of the warm-up, rising linearly to ``lr``; None = ``lr`` (constant warm-up, what
    the official recipe's ``warmup_lr = -1`` amounts to)."""

    def __post_init__(self) -> None:
        unknown = [d for d in self.elastic if d not in ELASTIC_DIMS]
        if unknown:
            raise ValueError(f"ShrinkPhase.elastic must be a subset of {ELASTIC_DIMS}, got {self.elastic!r}")
        if self.epochs < 1 or self.subnets_per_step < 1 or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                f"ShrinkPhase needs epochs >= 1, subnets_per_step >= 1 and 0 <= warmup_epochs < epochs, got {self!r}"
            )
        if self.lr <= 0:
            raise ValueError(f"ShrinkPhase.lr must be positive, got {self.lr!r}")


#: The official Scene Flow schedule (``train.sh``, ``train_ofa_stereo.py``): 64 + 4 x (2 + 25) = 172 epochs.
EASNET_SCENEFLOW_PHASES = (
    ShrinkPhase("large", 64, 1e-3, [], 1, 0),
    ShrinkPhase("kernel", 27, 5e-4, ["kernel"], 1, 2),
    ShrinkPhase("depth", 27, 5e-4, ["kernel", "depth"], 2, 2),
    ShrinkPhase("expand", 27, 5e-4, ["kernel", "depth", "expand"], 4, 2),
    ShrinkPhase("scale", 27, 5e-4, ["kernel", "depth", "expand", "scale"], 6, 2),
)


def pyramid_weights(n: int) -> list[float]:
    """AANet/EASNet loss weights by number of outputs (coarsest first): ``[1/3, 2/3, 1, ...]`` for ``n >= 4``."""
    if n >= 4:
        return [1 / 3, 2 / 3] + [1.0] * (n - 2)
    if n in (1, 3):
        return [1.0] * n
    raise ValueError(f"no AANet loss weights for {n} outputs")


def aanet_loss(
    pyramid: Sequence[Tensor], target: Tensor, valid: Tensor, max_disp: float = 192.0
) -> tuple[Tensor, list[Tensor]]:
    """Weighted SmoothL1 of every pyramid prediction, bilinearly upsampled to ``target`` and scaled by the width ratio.

    Pixels count where ``valid & 0 < target < max_disp``. Returns ``(total, per-output losses)``; with no valid
    pixel the total is a zero that keeps the graph.
    """
    mask = valid & (target > 0) & (target < max_disp)
    weights = pyramid_weights(len(pyramid))
    total = target.new_zeros(())
    per_output = []
    for pred, weight in zip(pyramid, weights):
        if pred.shape[-1] != target.shape[-1] or pred.shape[-2] != target.shape[-2]:
            ratio = target.shape[-1] / pred.shape[-1]
            pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False) * ratio
        if mask.any():
            loss = F.smooth_l1_loss(pred[mask], target[mask])
        else:
            loss = pred.sum() * 0.0
        per_output.append(loss.detach())
        total = total + weight * loss
    return total, per_output


class EASNetModule(StereoModule):
    """Progressive-shrinking training of :class:`~lightning_hpml.modules.stereo.easnet.EASNet`.

    Args:
        net: The supernet.
        phases: Progressive-shrinking phases (default: the official Scene Flow schedule).
        weight_decay: Adam weight decay (not applied to BatchNorm parameters and biases).
        betas: Adam betas.
        max_disp: Ground-truth disparities at or above this are ignored by the loss.
        eval_config: Sub-network evaluated in validation/test/predict (``{"ks", "e", "d", "s"}``, scalars or
            lists); default the largest.
        seed: Seed of the per-step sub-network sampling.
        val_bn_batches: Training batches used to re-estimate BatchNorm statistics of the evaluation sub-network
            before each validation during ``fit`` (0: use the running statistics of training).
        image_max_disp, log_images, init_ckpt_path: As in :class:`StereoModule`.
    """

    def __init__(
        self,
        net: EASNet,
        phases: Sequence[ShrinkPhase] | None = None,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        max_disp: float = 192.0,
        eval_config: dict[str, Any] | None = None,
        seed: int = 0,
        val_bn_batches: int = 0,
        image_max_disp: float | None = None,
        log_images: bool = True,
        init_ckpt_path: str | None = None,
    ) -> None:
        if not isinstance(net, EASNet):
            raise TypeError(f"`net` must be an EASNet supernet, got {type(net).__name__}")
        phases = list(phases) if phases is not None else list(EASNET_SCENEFLOW_PHASES)
        if not phases:
            raise ValueError("`phases` must contain at least one phase")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay!r}")
        if val_bn_batches < 0:
            raise ValueError(f"`val_bn_batches` must be >= 0, got {val_bn_batches!r}")
        super().__init__(
            net,
            lr=phases[0].lr,
            betas=betas,
            amsgrad=False,
            image_max_disp=image_max_disp,
            supervised_outputs=(),
            log_images=log_images,
            init_ckpt_path=init_ckpt_path,
        )
        self.phases = phases
        self.eval_subnet = SubnetConfig.make(**eval_config) if eval_config is not None else net.max_config
        net.set_active_subnet(config=self.eval_subnet)  # validates the choices early
        self.automatic_optimization = False
        self._phase_index = -1
        self._bn_backup: dict[str, Tensor] | None = None

    # ---------------------------------------------------------------- schedule
    def phase_at(self, epoch: int) -> tuple[int, int]:
        """``(phase index, epoch within the phase)``; after the last phase the last one continues."""
        start = 0
        for index, phase in enumerate(self.phases):
            if epoch < start + phase.epochs or index == len(self.phases) - 1:
                return index, epoch - start
            start += phase.epochs
        raise AssertionError("unreachable")

    def lr_at(self, epoch: float) -> float:
        """Learning rate at fractional ``epoch``: per phase, warm-up then cosine decay to 0."""
        index, _ = self.phase_at(int(epoch))
        phase = self.phases[index]
        t = epoch - sum(p.epochs for p in self.phases[:index])
        if t < phase.warmup_epochs:
            start = phase.lr if phase.warmup_lr is None else phase.warmup_lr
            return start + (phase.lr - start) * t / phase.warmup_epochs
        progress = min((t - phase.warmup_epochs) / (phase.epochs - phase.warmup_epochs), 1.0)
        return 0.5 * phase.lr * (1.0 + math.cos(math.pi * progress))

    def _sample(self, phase: ShrinkPhase, rng: random.Random) -> SubnetConfig:
        net: EASNet = self.net
        choices = {
            "kernel_sizes": net.kernel_sizes if "kernel" in phase.elastic else [net.kernel_sizes[-1]],
            "expand_ratios": net.expand_ratios if "expand" in phase.elastic else [net.expand_ratios[-1]],
            "depths": net.depths if "depth" in phase.elastic else [net.depths[-1]],
            "scales": net.scales if "scale" in phase.elastic else [net.scales[-1]],
        }
        return net.sample_active_subnet(rng=rng, **choices)

    # ---------------------------------------------------------------- hooks
    def on_train_epoch_start(self) -> None:
        index, _ = self.phase_at(self.current_epoch)
        if index == self._phase_index:
            return
        previous = self.phases[self._phase_index] if self._phase_index >= 0 else None
        if previous is not None:
            self.optimizers().optimizer.state.clear()  # a fresh optimiser per phase, as in the official runs
            if "expand" in self.phases[index].elastic and "expand" not in previous.elastic:
                self.net.reorganize_middle_weights(max(len(self.net.expand_ratios) - 2, 0))
        self._phase_index = index
        self.print(f"EASNet progressive shrinking: phase {index} ({self.phases[index].name})")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["easnet_phase_index"] = self._phase_index

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._phase_index = int(checkpoint.get("easnet_phase_index", -1))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        index, _ = self.phase_at(self.current_epoch)
        phase = self.phases[index]
        n_batches = float(self.trainer.num_training_batches)
        fraction = min(batch_idx / n_batches, 1.0) if math.isfinite(n_batches) and n_batches > 0 else 0.0
        lr = self.lr_at(self.current_epoch + fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        target, valid = batch["disparity"], batch["valid"]
        optimizer.zero_grad()
        rng = random.Random(f"{self.hparams.seed}-{self.global_step}")
        total = target.new_zeros(())
        for _ in range(phase.subnets_per_step):
            self._sample(phase, rng)
            out = self.net(batch["left"], batch["right"])
            loss, _ = aanet_loss(out["pyramid"], target, valid, self.hparams.max_disp)
            self.manual_backward(loss)
            total = total + loss.detach()
        optimizer.step()
        self.train_epe(out["disparity"].detach(), target, valid)
        batch_size = target.shape[0]
        self.log("train/loss", total / phase.subnets_per_step, prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.log("train/epe", self.train_epe, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/lr", lr, batch_size=batch_size)
        self.log("train/phase", float(index), batch_size=batch_size)
        return total

    def _activate_eval_subnet(self) -> None:
        self.net.set_active_subnet(config=self.eval_subnet)

    def on_validation_epoch_start(self) -> None:
        self._activate_eval_subnet()
        n = self.hparams.val_bn_batches
        loader = self.trainer.train_dataloader if self.trainer.state.fn == "fit" else None
        if n > 0 and loader is not None and not self.trainer.sanity_checking:
            self._bn_backup = {
                k: v.clone() for k, v in self.net.state_dict().items() if "running_" in k or "num_batches" in k
            }
            reestimate_bn(self.net, itertools.islice(iter(loader), n))
            self.net.eval()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self._bn_backup is not None:
            self.net.load_state_dict(self._bn_backup, strict=False)
            self._bn_backup = None

    def on_test_epoch_start(self) -> None:
        self._activate_eval_subnet()

    def on_predict_epoch_start(self) -> None:
        self._activate_eval_subnet()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for module in self.net.modules():
            for name, param in module.named_parameters(recurse=False):
                if isinstance(module, nn.modules.batchnorm._BatchNorm) or name == "bias":
                    no_decay.append(param)
                else:
                    decay.append(param)
        groups = [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.Adam(groups, lr=self.phases[0].lr, betas=tuple(self.hparams.betas))
