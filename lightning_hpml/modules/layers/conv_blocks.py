"""Convolution blocks of the DispNet/FADNet family.

The channel plans and layer types follow the official FADNet code (HKBU-HPML/FADNet, ``networks/submodules.py``) so
that parameter counts match it exactly; see ``shared/reference/stereo-models-and-datasets.md`` section 1.2.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConvLReLU", "DisparityHead", "ResBlock", "UpConvLReLU", "disparity_upsampler", "iconv"]


class ConvLReLU(nn.Sequential):
    """``k x k`` convolution with bias and "same" padding, followed by LeakyReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=True),
            nn.LeakyReLU(0.1, inplace=True),
        )


class ResBlock(nn.Module):
    """Basic residual block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus a projected shortcut when the shape changes.

    The convolutions keep their bias although BatchNorm follows, as in the official code (it changes the parameter
    count, not the function).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=True), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class UpConvLReLU(nn.Sequential):
    """Learned x2 upsampling of features: 4x4 transposed convolution (no bias) + LeakyReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 4, 2, padding=1, bias=False),
            nn.LeakyReLU(0.1, inplace=True),
        )


class DisparityHead(nn.Conv2d):
    """3x3 convolution (no bias) predicting one disparity channel from decoder features."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels, 1, 3, 1, padding=1, bias=False)


def iconv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """The decoder's fusion layer: a stride-1 3x3 transposed convolution with bias and no activation.

    A stride-1 transposed convolution is a plain convolution with flipped weights; it is kept as a transposed
    convolution so that official checkpoints map one-to-one.
    """
    return nn.ConvTranspose2d(in_channels, out_channels, 3, 1, padding=1, bias=True)


def disparity_upsampler() -> nn.ConvTranspose2d:
    """Learned x2 upsampling of a one-channel disparity map (4x4 transposed convolution, no bias)."""
    return nn.ConvTranspose2d(1, 1, 4, 2, padding=1, bias=False)
