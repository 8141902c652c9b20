"""Shared building blocks for the model zoo."""

from lightning_hpml.modules.layers.conv_blocks import (
    ConvLReLU,
    DisparityHead,
    ResBlock,
    UpConvLReLU,
    disparity_upsampler,
    iconv,
)
from lightning_hpml.modules.layers.correlation import correlation_1d
from lightning_hpml.modules.layers.warping import channel_norm, warp_right_to_left

__all__ = [
    "ConvLReLU",
    "DisparityHead",
    "ResBlock",
    "UpConvLReLU",
    "channel_norm",
    "correlation_1d",
    "disparity_upsampler",
    "iconv",
    "warp_right_to_left",
]
