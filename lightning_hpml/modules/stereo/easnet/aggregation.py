"""AANet adaptive cost aggregation: intra-scale (deformable) bottlenecks + cross-scale fusion, stacked 6 times.

Facts from Xu & Zhang, "AANet: Adaptive Aggregation Network for Efficient Stereo Matching", CVPR 2020,
arXiv:2004.09548, as used by HKBU-HPML/EASNet (``ofa/stereo_matching/networks/aggregation.py``, ``deform.py``);
reimplemented, no code copied.

Deliberate differences from the official code:

- The modulated deformable convolution is ``torchvision.ops.deform_conv2d`` (with mask) instead of AANet's compiled
  CUDA op; the offset/mask layout is torchvision's (``2*k*k`` offsets per deformable group, then ``k*k`` masks).
- The number of active scales is taken from the length of the input list instead of a ``set_active_scale`` call.
- :meth:`AdaptiveAggregation.clip_scales` can also drop the unused final convolutions of removed scales
  (the official sub-net keeps them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = ["AdaptiveAggregation", "AdaptiveAggregationModule", "ModulatedDeformConv2d"]


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class ModulatedDeformConv2d(nn.Module):
    """3x3 modulated deformable convolution (DCNv2) with a zero-initialised offset/mask predictor.

    The mask is ``2 * sigmoid(.)`` so that, at initialisation (zero offsets, mask 1), it is a regular dilated conv.
    """

    def __init__(self, channels: int, dilation: int = 2, deformable_groups: int = 2, kernel_size: int = 3) -> None:
        super().__init__()
        self.dilation, self.deformable_groups, self.kernel_size = dilation, deformable_groups, kernel_size
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        nn.init.uniform_(
            self.weight, -1.0 / (channels * kernel_size**2) ** 0.5, 1.0 / (channels * kernel_size**2) ** 0.5
        )
        self.offset_conv = nn.Conv2d(
            channels,
            deformable_groups * 3 * kernel_size**2,
            kernel_size,
            padding=dilation,
            dilation=dilation,
            groups=deformable_groups,
            bias=True,
        )
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        offset_mask = self.offset_conv(x)
        n_offset = self.deformable_groups * 2 * self.kernel_size**2
        offset, mask = offset_mask[:, :n_offset], 2.0 * torch.sigmoid(offset_mask[:, n_offset:])
        return deform_conv2d(x, offset, self.weight, None, padding=self.dilation, dilation=self.dilation, mask=mask)


class Bottleneck(nn.Module):
    """``1x1 -> BN -> ReLU -> 3x3 (plain or deformable) -> BN -> ReLU -> 1x1 -> BN`` + identity, ReLU."""

    def __init__(self, channels: int, deformable: bool, dilation: int = 2, deformable_groups: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        if deformable:
            self.conv2: nn.Module = ModulatedDeformConv2d(channels, dilation, deformable_groups)
        else:
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + x)


class AdaptiveAggregationModule(nn.Module):
    """One AANet fusion: a bottleneck per scale, then every output scale sums all (resampled) scales, LeakyReLU.

    Scale ``i`` has ``max_disp // 2^i`` channels. Coarser -> finer: 1x1 conv + BN, bilinear upsampling; finer ->
    coarser: ``i - j`` stride-2 3x3 conv + BN (LeakyReLU 0.2 between them).
    """

    def __init__(self, num_scales: int, max_disp: int, deformable: bool, dilation: int, deformable_groups: int) -> None:
        super().__init__()
        ch = [max_disp // 2**i for i in range(num_scales)]
        self.branches = nn.ModuleList(Bottleneck(c, deformable, dilation, deformable_groups) for c in ch)
        self.fuse_layers = nn.ModuleList()
        for i in range(num_scales):
            row = nn.ModuleList()
            for j in range(num_scales):
                if i == j:
                    row.append(nn.Identity())
                elif i < j:
                    row.append(_conv_bn(ch[j], ch[i], 1))
                else:
                    steps = [_conv_bn(ch[j], ch[j], 3, 2, act=True) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*steps, _conv_bn(ch[j], ch[i], 3, 2)))
            self.fuse_layers.append(row)

    def clip_scales(self, num_scales: int) -> None:
        self.branches = self.branches[:num_scales]
        self.fuse_layers = nn.ModuleList(row[:num_scales] for row in self.fuse_layers[:num_scales])

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        n = len(x)
        if n > len(self.branches):
            raise ValueError(f"got {n} cost volumes but the module has {len(self.branches)} scales")
        x = [self.branches[i](x[i]) for i in range(n)]
        fused = []
        for i in range(n):
            acc = self.fuse_layers[i][0](x[0])
            for j in range(1, n):
                y = self.fuse_layers[i][j](x[j])
                if y.shape[-2:] != acc.shape[-2:]:
                    y = F.interpolate(y, size=acc.shape[-2:], mode="bilinear", align_corners=False)
                acc = acc + y
            fused.append(F.leaky_relu(acc, 0.2))
        return fused


class AdaptiveAggregation(nn.Module):
    """Stacked :class:`AdaptiveAggregationModule` s (the last ``num_deform_blocks`` deformable) + per-scale 1x1 conv.

    Args:
        max_disp: Disparity candidates at the finest (1/3) scale.
        num_scales: Maximum number of scales.
        num_fusions: Stacked fusion modules.
        num_deform_blocks: How many of the last fusion modules use deformable bottlenecks.
        dilation: Dilation of the deformable convolutions.
        deformable_groups: Deformable groups.

    The forward takes ``n <= num_scales`` cost volumes (finest first) and returns ``n`` aggregated volumes.
    """

    def __init__(
        self,
        max_disp: int = 64,
        num_scales: int = 4,
        num_fusions: int = 6,
        num_deform_blocks: int = 3,
        dilation: int = 2,
        deformable_groups: int = 2,
    ) -> None:
        super().__init__()
        self.fusions = nn.ModuleList(
            AdaptiveAggregationModule(
                num_scales, max_disp, i >= num_fusions - num_deform_blocks, dilation, deformable_groups
            )
            for i in range(num_fusions)
        )
        self.final_conv = nn.ModuleList(nn.Conv2d(max_disp // 2**i, max_disp // 2**i, 1) for i in range(num_scales))

    def clip_scales(self, num_scales: int, keep_final_convs: bool = False) -> None:
        """Drop the modules of scales ``>= num_scales`` (the official sub-net keeps the final convs)."""
        for fusion in self.fusions:
            fusion.clip_scales(num_scales)
        if not keep_final_convs:
            self.final_conv = self.final_conv[:num_scales]

    def forward(self, cost_volumes: list[Tensor]) -> list[Tensor]:
        x = list(cost_volumes)
        for fusion in self.fusions:
            x = fusion(x)
        return [self.final_conv[i](x[i]) for i in range(len(x))]
