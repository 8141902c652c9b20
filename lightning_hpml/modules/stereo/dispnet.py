"""DispNet-style encoder/decoders used as FADNet's two stages: DispNetC (correlation) and DispNetRes (refinement).

Follows the official FADNet code (https://github.com/HKBU-HPML/FADNet, ``networks/DispNetC.py``,
``networks/DispNetRes.py``) as documented in ``shared/reference/stereo-models-and-datasets.md`` section 1.2;
reimplemented, no code copied. Predictions are listed finest first: index ``k`` has resolution ``1/2^k`` and every
scale is expressed in full-resolution pixels, as in the official code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.layers import (
    ConvLReLU,
    DisparityHead,
    ResBlock,
    UpConvLReLU,
    correlation_1d,
    disparity_upsampler,
    iconv,
)

__all__ = [
    "DispNetC",
    "DispNetDecoder",
    "DispNetRes",
    "map_official_dispnet_key",
    "scaled_channels",
    "unwrap_state_dict",
]

#: Encoder widths of conv1 .. conv6 and decoder widths of levels 5 .. 0 at width multiplier 1.
ENCODER_CHANNELS = (64, 128, 256, 512, 512, 1024)
DECODER_CHANNELS = (512, 256, 128, 64, 32, 16)
REDIRECT_CHANNELS = 32
NUM_SCALES = 7


def scaled_channels(channels: Sequence[int], width: float) -> tuple[int, ...]:
    """Multiply a channel plan by ``width`` (rounded, at least 1 channel)."""
    return tuple(max(1, round(c * width)) for c in channels)


def _encoder_tail(c3: int, c4: int, c5: int, c6: int) -> nn.ModuleDict:
    """conv4 .. conv6_1: pairs of (stride-2 ResBlock, ResBlock) shared by both stages."""
    return nn.ModuleDict(
        {
            "conv4": ResBlock(c3, c4, stride=2),
            "conv4_1": ResBlock(c4, c4),
            "conv5": ResBlock(c4, c5, stride=2),
            "conv5_1": ResBlock(c5, c5),
            "conv6": ResBlock(c5, c6, stride=2),
            "conv6_1": ResBlock(c6, c6),
        }
    )


def _run_tail(tail: nn.ModuleDict, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    c4 = tail["conv4_1"](tail["conv4"](x))
    c5 = tail["conv5_1"](tail["conv5"](c4))
    c6 = tail["conv6_1"](tail["conv6"](c5))
    return c4, c5, c6


class DispNetDecoder(nn.Module):
    """Six-level U-Net decoder predicting disparity at 7 scales (1/64 .. 1/1).

    At each level the upsampled features, the upsampled coarser prediction and the encoder skip are concatenated,
    fused by ``iconv`` and fed to a prediction head. With ``base`` predictions (FADNet's second stage) each head
    predicts a residual that is added to the base prediction of the same scale before it is upsampled further.
    """

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int], image_channels: int = 3):
        super().__init__()
        c1, c2, c3, c4, c5, c6 = encoder_channels
        skips = (c5, c4, c3, c2, c1, image_channels)
        self.head6 = DisparityHead(c6)
        self.upconvs = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        self.iconvs = nn.ModuleList()
        self.heads = nn.ModuleList()
        previous = c6
        for out_channels, skip in zip(decoder_channels, skips):
            self.upconvs.append(UpConvLReLU(previous, out_channels))
            self.upsamplers.append(disparity_upsampler())
            self.iconvs.append(iconv(out_channels + 1 + skip, out_channels))
            self.heads.append(DisparityHead(out_channels))
            previous = out_channels

    def forward(
        self, bottleneck: Tensor, skips: Sequence[Tensor], base: Sequence[Tensor] | None = None
    ) -> list[Tensor]:
        """Decode.

        Args:
            bottleneck: conv6 features.
            skips: Skip tensors for levels 5 .. 0 (conv5, conv4, conv3, conv2, conv1 features and the image).
            base: Optional 7 predictions (finest first) to refine residually.

        Returns:
            7 predictions, finest first, before any output activation.
        """
        pred = self.head6(bottleneck)
        if base is not None:
            pred = pred + base[6]
        preds = [pred]
        features = bottleneck
        for level, skip in enumerate(skips):
            scale = 5 - level
            up = self.upconvs[level](features)
            up_pred = self.upsamplers[level](pred)
            features = self.iconvs[level](torch.cat((up, up_pred, skip), dim=1))
            pred = self.heads[level](features)
            if base is not None:
                pred = pred + base[scale]
            preds.append(pred)
        return preds[::-1]


class DispNetC(nn.Module):
    """FADNet stage 1: residual DispNetC with a 1-D correlation layer at 1/8 resolution.

    Input: normalised left and right images ``(B, 3, H, W)`` with ``H, W`` divisible by 64.
    Output: 7 disparity maps, finest first; ReLU only on the full-resolution one (as the official code).
    """

    def __init__(self, width: float = 1.0, corr_displacements: int = 40) -> None:
        super().__init__()
        c1, c2, c3, c4, c5, c6 = enc = scaled_channels(ENCODER_CHANNELS, width)
        (redirect,) = scaled_channels((REDIRECT_CHANNELS,), width)
        self.corr_displacements = corr_displacements
        self.conv1 = ConvLReLU(3, c1, kernel_size=7, stride=2)
        self.conv2 = ResBlock(c1, c2, stride=2)
        self.conv3 = ResBlock(c2, c3, stride=2)
        self.corr_act = nn.LeakyReLU(0.1, inplace=True)
        self.conv_redir = ResBlock(c3, redirect)
        self.conv3_1 = ResBlock(redirect + corr_displacements, c3)
        self.tail = _encoder_tail(c3, c4, c5, c6)
        self.decoder = DispNetDecoder(enc, scaled_channels(DECODER_CHANNELS, width))

    def forward(self, left: Tensor, right: Tensor) -> list[Tensor]:
        # The feature extractor is shared but runs on each view separately, as in the official code, so that
        # training-mode BatchNorm statistics are per view.
        f1, f2, f3 = self._features(left)
        f3_right = self._features(right)[2]
        corr = self.corr_act(correlation_1d(f3, f3_right, self.corr_displacements))
        c3 = self.conv3_1(torch.cat((self.conv_redir(f3), corr), dim=1))
        c4, c5, c6 = _run_tail(self.tail, c3)
        preds = self.decoder(c6, (c5, c4, c3, f2, f1, left))
        preds[0] = F.relu(preds[0])
        return preds

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f1 = self.conv1(x)
        f2 = self.conv2(f1)
        return f1, f2, self.conv3(f2)


class DispNetRes(nn.Module):
    """FADNet stage 2: a correlation-free DispNet that refines stage 1 residually at every scale.

    Input: the 11-channel stack ``(left, right, warped right, stage-1 disparity, |left - warped right|)``.
    Output: 7 refined disparity maps, finest first, each passed through ReLU (``lastRelu=True`` in the official code).
    """

    def __init__(
        self,
        width: float = 1.0,
        in_channels: int = 11,
        encoder_channels: Sequence[int] | None = None,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        """``width`` scales FADNet's channel plan; explicit ``encoder_channels`` (conv1..conv6) and
        ``decoder_channels`` (levels 5..0) replace it (FADNet++ sizes)."""
        super().__init__()
        enc = tuple(encoder_channels) if encoder_channels else scaled_channels(ENCODER_CHANNELS, width)
        dec = tuple(decoder_channels) if decoder_channels else scaled_channels(DECODER_CHANNELS, width)
        c1, c2, c3, c4, c5, c6 = enc
        self.conv1 = ConvLReLU(in_channels, c1, kernel_size=7, stride=2)
        self.conv2 = ResBlock(c1, c2, stride=2)
        self.conv3 = ResBlock(c2, c3, stride=2)
        self.conv3_1 = ResBlock(c3, c3)
        self.tail = _encoder_tail(c3, c4, c5, c6)
        self.decoder = DispNetDecoder(enc, dec)

    def forward(self, x: Tensor, base: Sequence[Tensor]) -> list[Tensor]:
        if len(base) != NUM_SCALES:
            raise ValueError(f"DispNetRes refines {NUM_SCALES} base predictions, got {len(base)}")
        f1 = self.conv1(x)
        f2 = self.conv2(f1)
        c3 = self.conv3_1(self.conv3(f2))
        c4, c5, c6 = _run_tail(self.tail, c3)
        preds = self.decoder(c6, (c5, c4, c3, f2, f1, x[:, :3]), base=base)
        return [F.relu(p) for p in preds]


def init_dispnet_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan-in) conv weights, zero biases, unit BatchNorm, as the official code initialises."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


_OFFICIAL_TAIL = re.compile(r"^(conv[456](?:_1)?)\.")
_OFFICIAL_DECODER = re.compile(r"^(upconv|upflow|iconv|pred_flow|pred_res)(\d)(?:to\d)?\.")
_DECODER_GROUPS = {"upconv": "upconvs", "upflow": "upsamplers", "iconv": "iconvs"}


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Return the state dict inside an official checkpoint, without the DataParallel ``module.`` prefix.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}`` (nesting allowed).
    """
    for wrapper in ("model", "state_dict"):
        if isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def map_official_dispnet_key(key: str) -> str:
    """Map a key of an official DispNetC/DispNetRes-style stage (without the stage prefix) to our names.

    ``conv4 .. conv6_1`` -> ``tail.*``; ``upconvK``, ``upflow{K+1}toK``, ``iconvK``, ``pred_flowK``/``pred_resK``
    -> ``decoder.{upconvs,upsamplers,iconvs,heads}.{5-K}``; ``pred_flow6``/``pred_res6`` -> ``decoder.head6``.
    Other keys (``conv1 .. conv3_1``, ``conv_redir``, ...) are returned unchanged.
    """
    key = _OFFICIAL_TAIL.sub(r"tail.\1.", key)
    match = _OFFICIAL_DECODER.match(key)
    if match is None:
        return key
    kind, level, rest = match.group(1), int(match.group(2)), key[match.end() :]
    if kind in ("pred_flow", "pred_res") and level == 6:
        return f"decoder.head6.{rest}"
    # upflow{K+1}to{K} feeds level K, like upconvK/iconvK/pred_flowK.
    index = 5 - (level - 1 if kind == "upflow" else level)
    return f"decoder.{_DECODER_GROUPS.get(kind, 'heads')}.{index}.{rest}"
