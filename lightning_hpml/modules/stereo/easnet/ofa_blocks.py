"""Once-for-All inverted-residual (MBConv) blocks: an elastic block and the plain block it extracts to.

Facts from Cai et al., "Once-for-All: Train One Network and Specialize it for Efficient Deployment", ICLR 2020,
arXiv:1908.09791, as used by EASNet (https://github.com/HKBU-HPML/EASNet, ``ofa/stereo_matching/elastic_nn/modules/
dynamic_layers.py`` and ``dynamic_op.py``); reimplemented, no code copied.

An MBConv block is ``1x1 expand -> BN -> ReLU -> depthwise kxk (stride) -> BN -> ReLU -> [squeeze-excite] -> 1x1
project -> BN`` with an identity shortcut when the stride is 1 and the widths match. The elastic block keeps the
largest kernel (7x7) and the largest hidden width; a smaller kernel is the centre crop of the next larger one passed
through a learned ``k^2 x k^2`` matrix (7->5, then 5->3; OFA ``KERNEL_TRANSFORM_MODE = 1``), and a smaller expand
ratio uses the first hidden channels (sorted by importance with :meth:`DynamicMBConv.reorganize_middle_weights`).

Deliberate differences from the official code:

- The elastic convolutions hold their weights directly (``weight`` parameters) instead of wrapping ``nn.Conv2d``
  modules, so state-dict keys differ; the transform matrices are named ``transform_7to5``/``transform_5to3``.
- None in the computation; BatchNorm over fewer channels than stored always goes through ``F.batch_norm`` on
  slices of the stored statistics, as the official ``DynamicBatchNorm2d`` does outside ``SET_RUNNING_STATISTICS``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DynamicBatchNorm2d",
    "DynamicMBConv",
    "MBConv",
    "ResidualBlock",
    "SqueezeExcite",
    "make_divisible",
]

CHANNEL_DIVISOR = 8
SE_REDUCTION = 4


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``, never below 90 % of ``value``)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def hidden_width(in_channels: int, expand_ratio: float) -> int:
    """Hidden (expanded) width of an MBConv block."""
    return make_divisible(round(in_channels * expand_ratio))


def _centre(kernel_size: int, sub_kernel_size: int) -> slice:
    start = kernel_size // 2 - sub_kernel_size // 2
    return slice(start, start + sub_kernel_size)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a hard sigmoid gate (reduction 4, hidden width divisible by 8)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = make_divisible(channels // SE_REDUCTION)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        y = x.mean(dim=(2, 3), keepdim=True)
        y = self.expand(F.relu(self.reduce(y)))
        return x * F.hardsigmoid(y)


class MBConv(nn.Module):
    """Plain inverted-residual block (what an elastic block extracts to)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, mid_channels: int, use_se: bool
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.mid_channels, self.use_se = kernel_size, stride, mid_channels, use_se
        self.inverted_bottleneck = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                bn=nn.BatchNorm2d(mid_channels),
                act=nn.ReLU(inplace=True),
            )
        )
        depth = OrderedDict(
            conv=nn.Conv2d(
                mid_channels, mid_channels, kernel_size, stride, kernel_size // 2, groups=mid_channels, bias=False
            ),
            bn=nn.BatchNorm2d(mid_channels),
            act=nn.ReLU(inplace=True),
        )
        if use_se:
            depth["se"] = SqueezeExcite(mid_channels)
        self.depth_conv = nn.Sequential(depth)
        self.point_linear = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(mid_channels, out_channels, 1, bias=False), bn=nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.point_linear(self.depth_conv(self.inverted_bottleneck(x)))


class DynamicBatchNorm2d(nn.Module):
    """BatchNorm over the first ``C`` channels of a wider BatchNorm (running statistics are updated in place)."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(max_channels)

    def forward(self, x: Tensor) -> Tensor:
        c, bn = x.shape[1], self.bn
        if c == bn.num_features:
            return bn(x)
        momentum = 0.0
        if bn.training and bn.track_running_stats:
            bn.num_batches_tracked += 1
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        return F.batch_norm(
            x,
            bn.running_mean[:c] if bn.running_mean is not None else None,
            bn.running_var[:c] if bn.running_var is not None else None,
            bn.weight[:c],
            bn.bias[:c],
            bn.training or not bn.track_running_stats,
            momentum,
            bn.eps,
        )

    def copy_to(self, target: nn.BatchNorm2d) -> None:
        """Copy the first ``target.num_features`` channels (affine and running statistics) into ``target``."""
        c = target.num_features
        with torch.no_grad():
            target.weight.copy_(self.bn.weight[:c])
            target.bias.copy_(self.bn.bias[:c])
            target.running_mean.copy_(self.bn.running_mean[:c])
            target.running_var.copy_(self.bn.running_var[:c])
            target.num_batches_tracked.copy_(self.bn.num_batches_tracked)


class DynamicDepthwiseConv(nn.Module):
    """Depthwise convolution with an elastic kernel size (centre crop + learned transform matrices)."""

    def __init__(self, max_channels: int, kernel_sizes: Sequence[int], stride: int) -> None:
        super().__init__()
        self.kernel_sizes = sorted(set(kernel_sizes))
        self.stride = stride
        k = self.kernel_sizes[-1]
        self.weight = nn.Parameter(torch.empty(max_channels, 1, k, k))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        for small, large in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:]):
            self.register_parameter(f"transform_{large}to{small}", nn.Parameter(torch.eye(small * small)))
        self.active_kernel_size = k

    def active_filter(self, channels: int, kernel_size: int) -> Tensor:
        """The ``(channels, 1, k, k)`` depthwise filter for ``kernel_size``."""
        filt = self.weight[:channels]
        for large, small in zip(reversed(self.kernel_sizes[1:]), reversed(self.kernel_sizes[:-1])):
            if large <= kernel_size:
                break
            crop = filt[:, :, _centre(large, small), _centre(large, small)].reshape(-1, small * small)
            matrix = getattr(self, f"transform_{large}to{small}")
            filt = F.linear(crop, matrix).reshape(channels, 1, small, small)
        return filt

    def forward(self, x: Tensor) -> Tensor:
        k, c = self.active_kernel_size, x.shape[1]
        return F.conv2d(x, self.active_filter(c, k), None, self.stride, k // 2, 1, c)


class DynamicPointwiseConv(nn.Module):
    """1x1 convolution using the first ``in`` input and ``active_out_channels`` output channels."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.active_out_channels = max_out

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight[: self.active_out_channels, : x.shape[1]])


class DynamicSqueezeExcite(nn.Module):
    """Squeeze-excite whose hidden width follows the active input width (``make_divisible(C // 4)``)."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(max_channels, make_divisible(max_channels // SE_REDUCTION), 1, bias=True)
        self.expand = nn.Conv2d(self.reduce.out_channels, max_channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        mid = make_divisible(c // SE_REDUCTION)
        y = x.mean(dim=(2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, self.reduce.weight[:mid, :c], self.reduce.bias[:mid]))
        y = F.conv2d(y, self.expand.weight[:c, :mid], self.expand.bias[:c])
        return x * F.hardsigmoid(y)

    def copy_to(self, target: SqueezeExcite) -> None:
        mid, c = target.reduce.out_channels, target.reduce.in_channels
        with torch.no_grad():
            target.reduce.weight.copy_(self.reduce.weight[:mid, :c])
            target.reduce.bias.copy_(self.reduce.bias[:mid])
            target.expand.weight.copy_(self.expand.weight[:c, :mid])
            target.expand.bias.copy_(self.expand.bias[:c])


class DynamicMBConv(nn.Module):
    """MBConv block with elastic depthwise kernel size and expand ratio.

    Args:
        in_channels: Input width (fixed).
        out_channels: Output width (fixed).
        kernel_sizes: Selectable depthwise kernel sizes (e.g. ``(3, 5, 7)``); the largest is stored.
        expand_ratios: Selectable expand ratios (e.g. ``(2, 4, 6, 8)``); the largest sets the stored hidden width.
        stride: Depthwise stride.
        use_se: Add squeeze-excite after the depthwise convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int],
        expand_ratios: Sequence[float],
        stride: int,
        use_se: bool,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride, self.use_se = in_channels, out_channels, stride, use_se
        self.kernel_sizes = sorted(set(kernel_sizes))
        self.expand_ratios = sorted(set(expand_ratios))
        max_mid = hidden_width(in_channels, self.expand_ratios[-1])
        self.expand_conv = DynamicPointwiseConv(in_channels, max_mid)
        self.expand_bn = DynamicBatchNorm2d(max_mid)
        self.depth_conv = DynamicDepthwiseConv(max_mid, self.kernel_sizes, stride)
        self.depth_bn = DynamicBatchNorm2d(max_mid)
        self.se = DynamicSqueezeExcite(max_mid) if use_se else None
        self.project_conv = DynamicPointwiseConv(max_mid, out_channels)
        self.project_bn = DynamicBatchNorm2d(out_channels)
        self.active_kernel_size = self.kernel_sizes[-1]
        self.active_expand_ratio = self.expand_ratios[-1]

    @property
    def active_mid_channels(self) -> int:
        return hidden_width(self.in_channels, self.active_expand_ratio)

    def forward(self, x: Tensor) -> Tensor:
        self.expand_conv.active_out_channels = self.active_mid_channels
        self.depth_conv.active_kernel_size = self.active_kernel_size
        x = F.relu(self.expand_bn(self.expand_conv(x)))
        x = F.relu(self.depth_bn(self.depth_conv(x)))
        if self.se is not None:
            x = self.se(x)
        return self.project_bn(self.project_conv(x))

    def get_active_subnet(self) -> MBConv:
        """A plain :class:`MBConv` with the active kernel/width and the (transformed, sliced) weights copied."""
        mid, k = self.active_mid_channels, self.active_kernel_size
        block = MBConv(self.in_channels, self.out_channels, k, self.stride, mid, self.use_se)
        block = block.to(device=self.depth_conv.weight.device, dtype=self.depth_conv.weight.dtype)
        with torch.no_grad():
            block.inverted_bottleneck.conv.weight.copy_(self.expand_conv.weight[:mid])
            block.depth_conv.conv.weight.copy_(self.depth_conv.active_filter(mid, k))
            block.point_linear.conv.weight.copy_(self.project_conv.weight[:, :mid])
        self.expand_bn.copy_to(block.inverted_bottleneck.bn)
        self.depth_bn.copy_to(block.depth_conv.bn)
        self.project_bn.copy_to(block.point_linear.bn)
        if self.se is not None:
            self.se.copy_to(block.depth_conv.se)
        return block

    @torch.no_grad()
    def reorganize_middle_weights(self, expand_ratio_stage: int = 0) -> Tensor:
        """Sort the hidden channels by decreasing L1 norm of their projection weights (OFA's importance).

        With ``expand_ratio_stage = k > 0`` the channels are sorted only within the bands between consecutive widths
        of the ``k + 1`` largest expand ratios (e.g. ratios 8/6/4/2 and ``k = 2``: within ``[0, w4)``, ``[w4, w6)``,
        ``[w6, w8)``), as the official progressive-shrinking ``expand`` stage does. Permutes expand/depthwise/BN/
        projection (and squeeze-excite) consistently, so the largest block computes the same function. Returns the
        channel order used.
        """
        importance = self.project_conv.weight.abs().sum(dim=(0, 2, 3))
        if expand_ratio_stage > 0:
            widths = [hidden_width(self.in_channels, e) for e in reversed(self.expand_ratios)]
            right, offset = importance.numel(), -len(widths) * 1e5
            for width in widths[: expand_ratio_stage + 1]:
                importance[width:right] += offset
                offset += 1e5
                right = width
        order = torch.argsort(importance, descending=True)
        self.project_conv.weight.copy_(self.project_conv.weight[:, order])
        self.depth_conv.weight.copy_(self.depth_conv.weight[order])
        self.expand_conv.weight.copy_(self.expand_conv.weight[order])
        for bn in (self.expand_bn.bn, self.depth_bn.bn):
            for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                tensor.copy_(tensor[order])
        if self.se is not None:
            se = self.se
            se.expand.weight.copy_(se.expand.weight[order])
            se.expand.bias.copy_(se.expand.bias[order])
            se.reduce.weight.copy_(se.reduce.weight[:, order])
            se_order = torch.argsort(se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True)
            se.expand.weight.copy_(se.expand.weight[:, se_order])
            se.reduce.weight.copy_(se.reduce.weight[se_order])
            se.reduce.bias.copy_(se.reduce.bias[se_order])
        return order


class ResidualBlock(nn.Module):
    """``conv(x) + x`` when the block keeps stride and width, else ``conv(x)``."""

    def __init__(self, conv: nn.Module, identity_shortcut: bool) -> None:
        super().__init__()
        self.conv = conv
        self.identity_shortcut = identity_shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return out + x if self.identity_shortcut else out
