"""FADNet++ — Wang, Shi, Chu et al., "FADNet++: Real-Time and Accurate Disparity Estimation with Configurable
Networks", arXiv:2110.02582 (2021). Official code: https://github.com/HKBU-HPML/FADNet-PP (no licence file;
``networks/FADNet.py``, ``networks/DispNetC.py``, ``networks/DispNetRes.py``, ``networks/submodules.py``, sizes in
``dltrainer.py`` ``_build_net``). Reimplemented from the facts in ``shared/reference/stereo-models-and-datasets.md``
section 2 and a reading of the official code; no code copied.

Architecture: FADNet's two stages with configurable widths. With ``E = 2 * encoder_ratio`` and
``D = 2 * decoder_ratio`` the shared feature extractor has widths ``E, 2E, 4E`` (1/2 .. 1/8); a 1-D correlation of
``max_disp // 8 + 16`` displacements at 1/8 resolution plus an ``E``-channel redirection of the left features feeds
a dynamic residual block (``DyRes``, allocated for ``max_range = 400``) so the same weights run with any
``max_disp <= max_range``; the encoder continues with ``8E, 16E, 32E`` and the decoder uses
``16D, 8D, 4D, 2D, D, D``. Stage 2 refines stage 1 residually at all 7 scales from the 11-channel stack
``(left, right, warped right, disparity, |left - warped right|)``. Parameter counts at ``max_disp=192`` equal the
official ``FADNet(maxdisp=192, encoder_ratio, decoder_ratio)`` exactly (see the registered sizes).

Note: ``fadnetpp`` (ratio 16) is not the ICRA FADNet (:mod:`lightning_hpml.modules.stereo.fadnet`): its stem is
32/64/128 channels wide (not 64/128/256) and its full-resolution decoder 32 (not 16); weights do not transfer.

Deliberate differences from the official code:

- Warping uses :func:`~lightning_hpml.modules.layers.warp_right_to_left` (``grid_sample`` with border padding and
  ``align_corners=True``, i.e. FlowNet2 ``Resample2d`` sampling exactly at ``x - d``), whereas FADNet++ calls
  ``grid_sample`` with zero padding and the default ``align_corners=False`` on a grid normalised by ``W - 1``, which
  samples at ``(x - d) * W / (W - 1) - 0.5`` (up to half a pixel off) and returns zeros outside the image. The
  photometric-error norm is the same ``sqrt(sum_c e^2 + 1e-8)``.
- The correlation is :func:`~lightning_hpml.modules.layers.correlation_1d`: displacements ``d >= W`` (only when the
  1/8-resolution feature map is narrower than the correlation width, e.g. inputs narrower than 320 px at
  ``max_disp=192``) give zeros; the official ``build_corr`` fills those channels with the ``d = 0`` correlation.
- ImageNet mean/std normalisation happens inside the model (non-persistent buffers) on [0, 1] inputs, as our
  FADNet; the official model receives already-normalised images.
- The forward always returns all 7 scales of both stages (the official eval forward returns only the finest
  of each stage); the TensorRT export path (``trt_transform``/``fix_dynamic``) is not reimplemented.
- Module names differ (the decoders are :class:`~lightning_hpml.modules.stereo.dispnet.DispNetDecoder` and the
  encoder tails live in a ``tail`` dict); :func:`checkpoint_filter_fn` maps official state-dict keys to ours.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.layers import ConvLReLU, ResBlock, channel_norm, correlation_1d, warp_right_to_left
from lightning_hpml.modules.layers.dynamic_conv import DynamicResBlock
from lightning_hpml.modules.registry import register_model
from lightning_hpml.modules.stereo.dispnet import (
    DispNetDecoder,
    DispNetRes,
    _encoder_tail,
    _run_tail,
    init_dispnet_weights,
    map_official_dispnet_key,
    unwrap_state_dict,
)
from lightning_hpml.modules.stereo.fadnet import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["FADNetPP", "checkpoint_filter_fn", "correlation_width"]

#: Largest disparity range the dynamic block after the correlation is allocated for (official ``MAX_RANGE``).
MAX_RANGE = 400
#: Channel unit: ``E = BASE_CHANNELS * encoder_ratio``, ``D = BASE_CHANNELS * decoder_ratio`` (official ``basicC``).
BASE_CHANNELS = 2


def correlation_width(max_disp: int) -> int:
    """Number of correlation displacements at 1/8 resolution for a full-resolution disparity range."""
    return max_disp // 8 + 16


def _channel_plans(e: int, d: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Encoder widths (conv1 .. conv6) and decoder widths (levels 5 .. 0)."""
    return (e, 2 * e, 4 * e, 8 * e, 16 * e, 32 * e), (16 * d, 8 * d, 4 * d, 2 * d, d, d)


class FeatureExtractor(nn.Module):
    """Shared stem (official ``ExtractNet``): conv 7x7/2 (E), ResBlock/2 (2E), ResBlock/2 (4E)."""

    def __init__(self, e: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = ConvLReLU(in_channels, e, kernel_size=7, stride=2)
        self.conv2 = ResBlock(e, 2 * e, stride=2)
        self.conv3 = ResBlock(2 * e, 4 * e, stride=2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f1 = self.conv1(x)
        f2 = self.conv2(f1)
        return f1, f2, self.conv3(f2)


class CorrelationUNet(nn.Module):
    """Stage 1 after the correlation (official ``CUNet``): redirect + dynamic ResBlock, encoder tail, decoder.

    Returns 7 predictions, finest first, with ReLU on the full-resolution one only.
    """

    def __init__(self, e: int, d: int, max_range: int = MAX_RANGE) -> None:
        super().__init__()
        encoder, decoder = _channel_plans(e, d)
        self.conv_redir = ResBlock(4 * e, e)
        self.conv3_1 = DynamicResBlock(correlation_width(max_range) + e, 4 * e)
        self.tail = _encoder_tail(encoder[2], encoder[3], encoder[4], encoder[5])
        self.decoder = DispNetDecoder(encoder, decoder)
        self.corr_act = nn.LeakyReLU(0.1)

    def forward(self, left: Tensor, f1: Tensor, f2: Tensor, f3: Tensor, corr: Tensor) -> list[Tensor]:
        c3 = self.conv3_1(torch.cat((self.conv_redir(f3), self.corr_act(corr)), dim=1))
        c4, c5, c6 = _run_tail(self.tail, c3)
        preds = self.decoder(c6, (c5, c4, c3, f2, f1, left))
        preds[0] = F.relu(preds[0])
        return preds


class FADNetPP(nn.Module):
    """Configurable two-stage disparity network (FADNet++).

    Args:
        encoder_ratio: Encoder width ratio; conv1 has ``E = 2 * encoder_ratio`` channels (16 = official "fadnet").
        decoder_ratio: Decoder width ratio; the full-resolution decoder level has ``D = 2 * decoder_ratio``.
        max_disp: Full-resolution disparity range; the correlation has ``max_disp // 8 + 16`` displacements.
            Can be changed after construction (``model.max_disp = 96``) up to ``max_range``: the same weights
            are used, the dynamic block slices its input channels.
        max_range: Largest ``max_disp`` the dynamic block is allocated for (400 in the official code; it sets the
            parameter count).
        normalize_input: Apply ImageNet mean/std to the [0, 1] inputs.

    Forward inputs ``left``, ``right``: ``(B, 3, H, W)`` in [0, 1] with ``H`` and ``W`` divisible by
    :attr:`size_divisor`. Returns a dict: ``disparity`` (final full-resolution prediction ``(B, 1, H, W)``),
    ``stage1`` and ``stage2`` (lists of 7 predictions, finest first, each in full-resolution pixels).
    """

    size_divisor = 64

    def __init__(
        self,
        encoder_ratio: int = 16,
        decoder_ratio: int = 16,
        max_disp: int = 192,
        max_range: int = MAX_RANGE,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("encoder_ratio", encoder_ratio), ("decoder_ratio", decoder_ratio)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if not isinstance(max_range, int) or max_range < 1:
            raise ValueError(f"`max_range` must be a positive integer, got {max_range!r}")
        self.encoder_ratio = encoder_ratio
        self.decoder_ratio = decoder_ratio
        self.max_range = max_range
        self.max_disp = max_disp  # validated by the setter
        self.normalize_input = normalize_input
        e, d = BASE_CHANNELS * encoder_ratio, BASE_CHANNELS * decoder_ratio
        self.extract_network = FeatureExtractor(e)
        self.cunet = CorrelationUNet(e, d, max_range=max_range)
        encoder, decoder = _channel_plans(e, d)
        self.dispnetres = DispNetRes(encoder_channels=encoder, decoder_channels=decoder)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        init_dispnet_weights(self)

    @property
    def max_disp(self) -> int:
        """Full-resolution disparity range used to size the correlation at run time."""
        return self._max_disp

    @max_disp.setter
    def max_disp(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= self.max_range:
            raise ValueError(f"`max_disp` must be an integer in [1, max_range={self.max_range}], got {value!r}")
        self._max_disp = value

    @property
    def corr_displacements(self) -> int:
        """Correlation channels for the current :attr:`max_disp` (``max_disp // 8 + 16``)."""
        return correlation_width(self.max_disp)

    def forward(self, left: Tensor, right: Tensor) -> dict[str, Any]:
        h, w = left.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f"FADNetPP needs H and W divisible by {self.size_divisor}, got {h}x{w}; pad the input "
                "(StereoModule does this for evaluation)"
            )
        if right.shape != left.shape:
            raise ValueError(
                f"left and right must have the same shape, got {tuple(left.shape)} and {tuple(right.shape)}"
            )
        if self.normalize_input:
            left = (left - self.mean) / self.std
            right = (right - self.mean) / self.std
        # The views go through the shared extractor separately (as the official code does), so BatchNorm batch
        # statistics in training are per view.
        f1, f2, f3 = self.extract_network(left)
        f3_right = self.extract_network(right)[2]
        corr = correlation_1d(f3, f3_right, self.corr_displacements)
        stage1 = self.cunet(left, f1, f2, f3, corr)
        disparity1 = stage1[0]
        warped = warp_right_to_left(right, disparity1)
        error = channel_norm(left - warped)
        stage2 = self.dispnetres(torch.cat((left, right, warped, disparity1, error), dim=1), stage1)
        return {"disparity": stage2[0], "stage1": stage1, "stage2": stage2}


_STAGES = ("cunet.", "dispnetres.")


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module | None = None) -> dict[str, Tensor]:
    """Map an official FADNet-PP ``FADNet`` state dict (optionally wrapped/``module.``-prefixed) to our keys.

    Handles ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers, the DataParallel ``module.`` prefix, the encoder
    tails (``conv4 .. conv6_1`` -> ``tail.*``) and decoder layers (``upconvK``, ``upflowKto{K-1}``, ``iconvK``,
    ``pred_flowK``/``pred_resK`` -> ``decoder.{upconvs,upsamplers,iconvs,heads}.{5-K}``, ``*6`` -> ``decoder.head6``)
    with :func:`~lightning_hpml.modules.stereo.dispnet.map_official_dispnet_key`.
    ``model`` is accepted for timm-style signatures and unused.
    """
    out: dict[str, Tensor] = {}
    for key, value in unwrap_state_dict(state_dict).items():
        for stage in _STAGES:
            if key.startswith(stage):
                key = stage + map_official_dispnet_key(key[len(stage) :])
                break
        out[key] = value
    return out


def _create_fadnet_pp(**kwargs: Any) -> FADNetPP:
    return FADNetPP(**kwargs)


@register_model
def fadnetpp_x(**kwargs: Any) -> FADNetPP:
    """Official "xfadnet" (ratios 32/32): 497,077,376 parameters."""
    return _create_fadnet_pp(**{"encoder_ratio": 32, "decoder_ratio": 32, **kwargs})


@register_model
def fadnetpp(**kwargs: Any) -> FADNetPP:
    """Official "fadnet" of FADNet++ (ratios 16/16): 124,381,856 parameters."""
    return _create_fadnet_pp(**{"encoder_ratio": 16, "decoder_ratio": 16, **kwargs})


@register_model
def fadnetpp_mobile(**kwargs: Any) -> FADNetPP:
    """Official "mobilefadnet" (ratios 8/8): 31,151,792 parameters."""
    return _create_fadnet_pp(**{"encoder_ratio": 8, "decoder_ratio": 8, **kwargs})


@register_model
def fadnetpp_slight(**kwargs: Any) -> FADNetPP:
    """Official "slightfadnet" (ratios 4/4): 7,816,184 parameters."""
    return _create_fadnet_pp(**{"encoder_ratio": 4, "decoder_ratio": 4, **kwargs})


@register_model
def fadnetpp_tiny(**kwargs: Any) -> FADNetPP:
    """Official "tinyfadnet" (ratios 2/1): 1,645,984 parameters."""
    return _create_fadnet_pp(**{"encoder_ratio": 2, "decoder_ratio": 1, **kwargs})


@register_model
def fadnetpp_micro(**kwargs: Any) -> FADNetPP:
    """Official "microfadnet" (ratios 1/1): 499,226 parameters."""
    return _create_fadnet_pp(**{"encoder_ratio": 1, "decoder_ratio": 1, **kwargs})
