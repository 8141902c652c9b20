"""DispMVS's feature / context encoder: a RAFT-style residual encoder with a small top-down FPN.

Follows ``BasicEncoder`` of the official code (Yannnnnnnnnnnn/DispMVS_release, ``extractor.py``): a 7x7 stride-2 stem
(64 ch), four stages of two residual blocks (64 at 1/2, 96 at 1/4, 128 at 1/8, 128 at 1/16), then a top-down path
(1/16 -> 1/8 -> 1/4, bilinear x2 upsampling with aligned corners and concatenation) and two output heads, at 1/4 and at
1/16. The feature network uses instance norm in the stem and residual blocks; the context network batch norm and
*deformable* 3x3 output heads (mmcv ``DeformConv2dPack`` in the official code, here
:class:`~lightning_hpml.modules.layers.deformable_conv.DeformableConv2d` on ``torchvision.ops.deform_conv2d``).
Top-down and plain output convolutions are conv-BatchNorm-ReLU in both.

Differences from the official code: ``width`` scales every channel count (1.0 = official); the offset predictor of the
deformable heads starts at zero (the official re-initialises it with Kaiming noise by accident of its init loop);
``modulated=True`` switches the heads to DCNv2 (off by default, as the official code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.layers.deformable_conv import DeformableConv2d

__all__ = ["DispMVSEncoder", "scaled"]


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8 (at least 8), so norms and groups stay well formed."""
    return max(8, round(channels * width / 8.0) * 8)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be 'instance' or 'batch', got {kind!r}")


class ConvBnReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU layers plus the (1x1-projected when strided) input, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=1),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride), _norm(norm, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.shortcut(x) + self.body(x))


class DispMVSEncoder(nn.Module):
    """Maps images (B, 3, H, W) to features at 1/4 and 1/16 resolution.

    Args:
        output_channels: Channels of the (1/4, 1/16) outputs (features: 96, 128; context: 192, 256).
        norm: ``"instance"`` (feature network) or ``"batch"`` (context network).
        deformable: Deformable output heads (context network).
        modulated: DCNv2 heads (with ``deformable``).
        width: Channel multiplier of the hidden layers.
    """

    def __init__(
        self,
        output_channels: Sequence[int] = (96, 128),
        norm: str = "instance",
        deformable: bool = False,
        modulated: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        stem, c1, c2, c3, c4 = (scaled(c, width) for c in (64, 64, 96, 128, 128))
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 7, stride=2, padding=3), _norm(norm, stem), nn.ReLU(inplace=True))
        stages, previous = [], stem
        for channels, stride in ((c1, 1), (c2, 2), (c3, 2), (c4, 2)):
            stages.append(
                nn.Sequential(ResidualBlock(previous, channels, norm, stride), ResidualBlock(channels, channels, norm))
            )
            previous = channels
        self.stages = nn.ModuleList(stages)
        self.top = ConvBnReLU(c4, c4)
        self.merge8 = ConvBnReLU(c4 + c3, c3)
        self.merge4 = ConvBnReLU(c3 + c2, c2)

        def head(in_channels: int, out_channels: int) -> nn.Module:
            if deformable:
                return DeformableConv2d(in_channels, out_channels, 3, padding=1, modulated=modulated)
            return ConvBnReLU(in_channels, out_channels)

        self.head16 = head(c4, output_channels[1])
        self.head4 = head(c2, output_channels[0])
        offset_predictors = {id(m.offset) for m in self.modules() if isinstance(m, DeformableConv2d)}
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and id(module) not in offset_predictors:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.stages[0](self.stem(images))
        x4 = self.stages[1](x)
        x8 = self.stages[2](x4)
        x16 = self.top(self.stages[3](x8))
        out16 = self.head16(x16)
        up = F.interpolate(x16, size=x8.shape[-2:], mode="bilinear", align_corners=True)
        x8 = self.merge8(torch.cat([x8, up], 1))
        up = F.interpolate(x8, size=x4.shape[-2:], mode="bilinear", align_corners=True)
        out4 = self.head4(self.merge4(torch.cat([x4, up], 1)))
        return out4, out16
