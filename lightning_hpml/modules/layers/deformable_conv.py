"""Deformable convolution that predicts its own sampling offsets (the "pack" form of DCN).

A plain convolution on the input predicts, per output pixel, a 2-D offset for every kernel tap (and with
``modulated=True`` also a sigmoid weight per tap, DCNv2); :func:`torchvision.ops.deform_conv2d` then samples the input
at the shifted taps. The offset predictor starts at zero, so at initialisation the layer is an ordinary convolution.
This is what mmcv's ``DeformConv2dPack`` (``modulated=False``) and ``ModulatedDeformConv2dPack`` (``modulated=True``)
compute; torchvision provides the kernel, so there is no mmcv dependency.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = ["DeformableConv2d"]


class DeformableConv2d(nn.Module):
    """Args:
    in_channels, out_channels, kernel_size, stride, padding: As :class:`torch.nn.Conv2d` (square kernels).
    modulated: Also predict a weight in (0, 1) per tap (DCNv2).
    bias: Learn an output bias (mmcv's defaults: no bias for DCNv1, a bias for DCNv2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        modulated: bool = False,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.modulated = stride, padding, modulated
        taps = kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        use_bias = modulated if bias is None else bias
        self.bias = nn.Parameter(torch.zeros(out_channels)) if use_bias else None
        self.offset = nn.Conv2d(in_channels, (3 if modulated else 2) * taps, kernel_size, stride, padding)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        predicted = self.offset(x)
        taps = self.weight.shape[-1] * self.weight.shape[-2]
        offset, mask = predicted[:, : 2 * taps], None
        if self.modulated:
            mask = torch.sigmoid(predicted[:, 2 * taps :])
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding, mask=mask)
