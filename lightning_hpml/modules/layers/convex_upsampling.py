"""RAFT-style convex upsampling: each fine pixel is a learned convex combination of its coarse 3x3 neighbourhood.

The network predicts ``9 * factor**2`` logits per coarse pixel; a softmax over the 9 neighbours gives the weights of
each of the ``factor x factor`` fine pixels it covers. Unlike bilinear upsampling this keeps depth edges sharp.
Borders replicate the edge value (RAFT pads with zeros, which drags border values towards 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["convex_upsample"]


def convex_upsample(x: Tensor, mask_logits: Tensor, factor: int) -> Tensor:
    """Upsample ``x`` (N, C, h, w) by ``factor`` with ``mask_logits`` (N, 9 * factor**2, h, w)."""
    n, c, h, w = x.shape
    if mask_logits.shape != (n, 9 * factor * factor, h, w):
        raise ValueError(
            f"mask_logits must have shape {(n, 9 * factor * factor, h, w)} for x of shape {tuple(x.shape)} and "
            f"factor {factor}, got {tuple(mask_logits.shape)}"
        )
    weights = torch.softmax(mask_logits.view(n, 1, 9, factor, factor, h, w), dim=2)
    neighbours = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel_size=3).view(n, c, 9, 1, 1, h, w)
    fine = (weights * neighbours).sum(dim=2)  # (n, c, factor, factor, h, w)
    return fine.permute(0, 1, 4, 2, 5, 3).reshape(n, c, factor * h, factor * w)
