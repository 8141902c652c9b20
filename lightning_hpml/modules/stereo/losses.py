"""Multi-scale disparity loss with FADNet's round-based loss-weight schedule.

Facts from the official FADNet code (``losses/multiscaleloss.py``, ``loss_configs/*.json``, ``dltrainer.py``), see
``shared/reference/stereo-models-and-datasets.md`` section 1.4: per scale ``k`` the target is the ground truth
average-pooled by ``2^k`` (values stay in full-resolution pixels), the per-scale term is SmoothL1 (beta 1) averaged over
valid pixels, the scales are weighted by the current round's weights, and both stages' losses are summed.
Training runs in rounds; the learning rate halves every 10 epochs and restarts from the base value at each round.

Difference from the official code: targets are pooled over valid pixels only (``pool(gt * valid) / pool(valid)``),
the official sparse-GT variant, for dense data as well; for dense ground truth without invalid pixels this equals the
official plain average pooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FADNET_SCENEFLOW_ROUNDS", "LossRound", "MultiScaleDisparityLoss", "round_at_epoch"]


@dataclass
class LossRound:
    """One round of the schedule: 7 scale weights (finest first) used for ``epochs`` epochs."""

    weights: list[float] = field(default_factory=lambda: [1.0, 0, 0, 0, 0, 0, 0])
    """Loss weight per scale, full resolution first."""
    epochs: int = 1
    """Number of epochs the round lasts."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"LossRound.epochs must be >= 1, got {self.epochs!r}")
        if any(w < 0 for w in self.weights) or not any(w > 0 for w in self.weights):
            raise ValueError(f"LossRound.weights must be non-negative with at least one positive, got {self.weights}")


#: The Scene Flow schedule of ``loss_configs/fadnet_sceneflow.json`` (4 rounds, 90 epochs).
FADNET_SCENEFLOW_ROUNDS = (
    LossRound([0.32, 0.16, 0.08, 0.04, 0.02, 0.01, 0.005], 20),
    LossRound([0.6, 0.32, 0.08, 0.04, 0.02, 0.01, 0.005], 20),
    LossRound([0.8, 0.16, 0.04, 0.02, 0.01, 0.005, 0.0025], 20),
    LossRound([1.0, 0, 0, 0, 0, 0, 0], 30),
)


def round_at_epoch(rounds: Sequence[LossRound], epoch: int) -> tuple[int, int]:
    """Return ``(round index, epoch within that round)``; after the last round the last one continues."""
    if not rounds:
        raise ValueError("the loss schedule needs at least one round")
    start = 0
    for index, rnd in enumerate(rounds):
        if epoch < start + rnd.epochs or index == len(rounds) - 1:
            return index, epoch - start
        start += rnd.epochs
    raise AssertionError("unreachable")


def pooled_target(target: Tensor, valid: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Average-pool the valid ground truth by ``factor``: ``(target, mask)`` at the coarse resolution."""
    if factor == 1:
        return target, valid
    weight = F.avg_pool2d(valid.to(target.dtype), factor)
    summed = F.avg_pool2d(torch.where(valid, target, torch.zeros_like(target)), factor)
    mask = weight > 0
    return summed / weight.clamp_min(1e-12), mask


class MultiScaleDisparityLoss(nn.Module):
    """``sum_k w_k * SmoothL1(pred_k, pool_{2^k}(gt))`` over valid pixels, for a list of predictions finest first."""

    def forward(self, preds: Sequence[Tensor], target: Tensor, valid: Tensor, weights: Sequence[float]) -> Tensor:
        if len(weights) != len(preds):
            raise ValueError(f"{len(preds)} predictions but {len(weights)} loss weights")
        total = preds[0].new_zeros(())
        for k, (pred, weight) in enumerate(zip(preds, weights)):
            if weight == 0:
                continue
            factor = target.shape[-1] // pred.shape[-1]
            if pred.shape[-2:] != (target.shape[-2] // factor, target.shape[-1] // factor):
                raise ValueError(
                    f"scale {k}: prediction {tuple(pred.shape)} does not tile target {tuple(target.shape)}"
                )
            tgt, mask = pooled_target(target, valid, factor)
            if mask.any():
                total = total + weight * F.smooth_l1_loss(pred[mask], tgt[mask], beta=1.0)
            else:
                total = total + 0.0 * pred.sum()  # keeps every output in the graph (needed by DDP)
        return total
