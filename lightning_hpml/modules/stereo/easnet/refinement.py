"""StereoDRNet-style disparity refinement (as in AANet/EASNet): upsample, warp, dilated residual blocks.

Facts from Chabra et al., "StereoDRNet: Dilated Residual StereoNet", CVPR 2019, arXiv:1904.02251, as implemented in
HKBU-HPML/EASNet ``ofa/stereo_matching/networks/refinement.py`` (``StereoDRNetRefinement``); reimplemented, no code
copied.

Deliberate differences from the official code:

- Warping uses the shared :func:`lightning_hpml.modules.layers.warp_right_to_left` (``align_corners=True``, border
  padding). The official ``disp_warp`` normalises by ``W - 1`` but calls ``grid_sample`` with the default
  ``align_corners=False``, so it samples at ``x * W / (W - 1) - 0.5`` instead of ``x``; ``official_warp=True``
  reproduces that (for official checkpoints).
- Disparities are ``(B, 1, H, W)`` in and out (the official uses ``(B, H, W)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.layers import warp_right_to_left

__all__ = ["DilatedBasicBlock", "StereoDRNetRefinement"]


def _conv_bn_lrelu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2, inplace=True)
    )


class DilatedBasicBlock(nn.Module):
    """ResNet basic block (two dilated 3x3 conv + BN, LeakyReLU 0.2) with identity shortcut."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)
        return F.leaky_relu(self.bn2(self.conv2(out)) + x, 0.2)


class StereoDRNetRefinement(nn.Module):
    """Refine a low-resolution disparity at the resolution of the given images.

    The disparity is bilinearly upsampled to the image size and multiplied by the width ratio; the right image is
    warped with it; ``(warped - left, left)`` -> conv 16 and disparity -> conv 16 are concatenated, passed through 6
    dilated basic blocks (dilations 1, 2, 4, 8, 1, 1) and a 3x3 conv predicting a residual; output
    ``relu(disp + residual)``.
    """

    dilations = (1, 2, 4, 8, 1, 1)

    def __init__(self, channels: int = 32, official_warp: bool = False) -> None:
        super().__init__()
        self.official_warp = official_warp
        self.image_conv = _conv_bn_lrelu(6, channels // 2)
        self.disp_conv = _conv_bn_lrelu(1, channels // 2)
        self.dilated_blocks = nn.Sequential(*(DilatedBasicBlock(channels, d) for d in self.dilations))
        self.final_conv = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, disparity: Tensor, left: Tensor, right: Tensor) -> Tensor:
        ratio = left.shape[-1] / disparity.shape[-1]
        if ratio != 1.0:
            disparity = F.interpolate(disparity, size=left.shape[-2:], mode="bilinear", align_corners=False) * ratio
        error = warp_right_to_left(right, disparity, align_corners=not self.official_warp) - left
        features = torch.cat((self.image_conv(torch.cat((error, left), dim=1)), self.disp_conv(disparity)), dim=1)
        residual = self.final_conv(self.dilated_blocks(features))
        return F.relu(disparity + residual)
