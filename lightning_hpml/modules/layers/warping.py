"""Disparity warping and photometric error, in pure PyTorch (replacing FlowNet2's CUDA Resample2d/ChannelNorm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["channel_norm", "warp_right_to_left"]


def warp_right_to_left(right: Tensor, disparity: Tensor, align_corners: bool = True) -> Tensor:
    """Resample the right view into the left view: ``out(x, y) = right(x - d(x, y), y)``, bilinear.

    Matches FlowNet2's ``Resample2d`` as FADNet uses it (flow ``(-d, 0)``): pixel-centred coordinates
    (``align_corners=True``) and border clamping outside the image.

    Args:
        right: Right image or features ``(B, C, H, W)``.
        disparity: Left-view disparity in pixels ``(B, 1, H, W)``.
        align_corners: ``False`` reproduces official code that normalises coordinates by ``size - 1`` but samples
            with ``align_corners=False`` (a half-pixel shift; EASNet's ``disp_warp``), for its checkpoints.
    """
    if disparity.shape[1] != 1 or disparity.shape[0] != right.shape[0] or disparity.shape[-2:] != right.shape[-2:]:
        raise ValueError(
            f"disparity must be (B, 1, H, W) matching right {tuple(right.shape)}, got {tuple(disparity.shape)}"
        )
    b, _, h, w = right.shape
    ys = torch.arange(h, device=right.device, dtype=right.dtype).view(1, h, 1).expand(b, h, w)
    xs = torch.arange(w, device=right.device, dtype=right.dtype).view(1, 1, w).expand(b, h, w)
    grid_x = 2.0 * (xs - disparity[:, 0]) / max(w - 1, 1) - 1.0
    grid_y = 2.0 * ys / max(h - 1, 1) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)
    return F.grid_sample(right, grid, mode="bilinear", padding_mode="border", align_corners=align_corners)


def channel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-pixel L2 norm over channels, ``sqrt(sum_c x^2 + eps)``: ``(B, C, H, W) -> (B, 1, H, W)``.

    ``eps`` keeps the gradient finite where the error is exactly zero (FADNet++ does the same).
    """
    return torch.sqrt(x.pow(2).sum(dim=1, keepdim=True) + eps)
