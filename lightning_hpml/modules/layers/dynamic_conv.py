"""Convolutions whose input channel count is chosen at run time (FADNet++'s ``DynamicConv2d`` / ``DyRes``).

The weight is allocated for the largest input the layer may ever see and sliced to the first ``C_in`` input
channels of each call, so one set of weights serves inputs of different widths. FADNet++ uses this for the block
after the correlation layer, whose width ``max_disp // 8 + 16`` depends on the disparity range (HKBU-HPML/FADNet-PP,
``networks/submodules.py``; reimplemented, no code copied).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DynamicConv2d", "DynamicResBlock"]


class DynamicConv2d(nn.Module):
    """Bias-free ``k x k`` convolution ("same" padding) using the first ``C_in`` input channels of its weight.

    The weight lives in an inner ``nn.Conv2d`` (attribute ``conv``) of shape
    ``(out_channels, max_in_channels, k, k)``, so state-dict keys match the official ``DynamicConv2d``.

    Args:
        max_in_channels: Largest number of input channels supported.
        out_channels: Output channels.
        kernel_size: Odd kernel size.
        stride: Convolution stride.
    """

    def __init__(self, max_in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd, got {kernel_size!r}")
        if max_in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"channel counts must be >= 1, got max_in_channels={max_in_channels!r}, out_channels={out_channels!r}"
            )
        self.max_in_channels = max_in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.padding = kernel_size // 2
        self.conv = nn.Conv2d(max_in_channels, out_channels, kernel_size, stride, padding=self.padding, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        in_channels = x.shape[1]
        if in_channels > self.max_in_channels:
            raise ValueError(
                f"DynamicConv2d got {in_channels} input channels but was allocated for at most "
                f"{self.max_in_channels}; build the model with a larger maximum range"
            )
        weight = self.conv.weight[:, :in_channels]
        return F.conv2d(x, weight, None, self.stride, self.padding)


class DynamicResBlock(nn.Module):
    """:class:`~lightning_hpml.modules.layers.ResBlock` whose first 3x3 conv and 1x1 shortcut are dynamic.

    Same structure as the official ``DyRes``: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` where
    ``conv1`` (3x3) and the shortcut's 1x1 conv are :class:`DynamicConv2d` without bias and ``conv2`` keeps its bias.
    The projected shortcut exists whenever ``stride != 1`` or ``max_in_channels != out_channels`` (decided by the
    allocated width, as in the official code).
    """

    def __init__(self, max_in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = DynamicConv2d(max_in_channels, out_channels, kernel_size=3, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or max_in_channels != out_channels:
            self.shortcut = nn.Sequential(
                DynamicConv2d(max_in_channels, out_channels, kernel_size=1, stride=stride),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))
