"""One-dimensional (horizontal) correlation cost volume for rectified stereo."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["correlation_1d"]


def correlation_1d(left: Tensor, right: Tensor, max_displacement: int) -> Tensor:
    """Correlate left features with right features shifted left by ``d = 0 .. max_displacement - 1`` pixels.

    ``out[:, d, y, x] = mean_c(left[:, c, y, x] * right[:, c, y, x - d])`` for ``x >= d`` and 0 where ``x < d``
    (no right pixel to match). This is the pure-PyTorch correlation of the released FADNet code: kernel size 1,
    stride 1, non-negative displacements only, normalised by the channel count.

    Args:
        left: Left feature map ``(B, C, H, W)``.
        right: Right feature map of the same shape.
        max_displacement: Number of displacements ``D`` (output channels).

    Returns:
        Cost volume ``(B, D, H, W)``.
    """
    if left.shape != right.shape:
        raise ValueError(
            f"left and right features must have the same shape, got {tuple(left.shape)} and {tuple(right.shape)}"
        )
    if max_displacement < 1:
        raise ValueError(f"`max_displacement` must be >= 1, got {max_displacement}")
    width = left.shape[-1]
    slices = []
    for d in range(max_displacement):
        if d >= width:
            slices.append(left.new_zeros(left.shape[0], left.shape[2], width))
            continue
        product = (left[..., d:] * right[..., : width - d]).mean(dim=1)
        slices.append(F.pad(product, (d, 0)))
    return torch.stack(slices, dim=1)
