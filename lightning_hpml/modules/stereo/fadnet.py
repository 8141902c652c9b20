"""FADNet — Wang, Shi, Chu et al., "FADNet: A Fast and Accurate Network for Disparity Estimation", ICRA 2020,
pp. 101-107, arXiv:2003.10758. Official code: https://github.com/HKBU-HPML/FADNet (branch ``main``; no licence
file). Reimplemented from the facts in ``shared/reference/stereo-models-and-datasets.md``; no code copied.

Architecture: stage 1 is a residual DispNetC with a 40-displacement 1-D correlation at 1/8 resolution; its
full-resolution disparity warps the right image to the left view; stage 2 (DispNetRes) takes the 11-channel stack
``(left, right, warped right, disparity, |left - warped right|)`` and adds a residual at each of the 7 scales. At width
1 the model has exactly 144,303,840 parameters, as the official ``FADNet(batchNorm=False, lastRelu=True)``.

Deliberate differences from the official code:

- Warping and the photometric-error norm are pure PyTorch (``grid_sample`` with border padding and aligned corners,
  the same sampling as FlowNet2's ``Resample2d``) instead of the CUDA ``Resample2d``/``ChannelNorm`` ops; the norm
  adds ``1e-8`` under the square root so its gradient stays finite at zero error. The model runs on CPU.
- ImageNet mean/std normalisation happens inside the model (non-persistent buffers, so state dicts are unchanged),
  and inputs are images in [0, 1] in both training and evaluation (the official ``main`` branch feeds test images
  in [0, 255] by accident; see the reference notes, pitfall 6).
- ``width`` scales every channel count (not an official option) to give small models for CPU tests and demos.
- The correlation is vectorised over channels but loops over displacements, matching the official loop exactly.
- The forward always returns all 7 scales of both stages (the official eval forward returns only the finest).
- Module names differ (decoders are :class:`~lightning_hpml.modules.stereo.dispnet.DispNetDecoder`, encoder tails
  live in a ``tail`` dict); :func:`checkpoint_filter_fn` maps the official keys and
  :meth:`FADNet.from_official_checkpoint` loads the released Scene Flow ``fadnet.pth`` strictly.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lightning_hpml.modules.layers import channel_norm, warp_right_to_left
from lightning_hpml.modules.registry import register_model
from lightning_hpml.modules.stereo.dispnet import (
    DispNetC,
    DispNetRes,
    init_dispnet_weights,
    map_official_dispnet_key,
    unwrap_state_dict,
)

__all__ = ["FADNet", "checkpoint_filter_fn"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FADNet(nn.Module):
    """Two-stage disparity network (DispNetC + residual DispNetRes).

    Args:
        width: Channel multiplier (1.0 = the paper's model).
        corr_displacements: Number of correlation displacements at 1/8 resolution (40 in the paper, i.e. a search
            range of 320 px at full resolution).
        normalize_input: Apply ImageNet mean/std to the [0, 1] inputs.

    Forward inputs ``left``, ``right``: ``(B, 3, H, W)`` in [0, 1] with ``H`` and ``W`` divisible by
    :attr:`size_divisor`. Returns a dict: ``disparity`` (final full-resolution prediction ``(B, 1, H, W)``),
    ``stage1`` and ``stage2`` (lists of 7 predictions, finest first, each in full-resolution pixels).
    """

    size_divisor = 64

    def __init__(self, width: float = 1.0, corr_displacements: int = 40, normalize_input: bool = True) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"`width` must be positive, got {width!r}")
        if corr_displacements < 1:
            raise ValueError(f"`corr_displacements` must be >= 1, got {corr_displacements!r}")
        self.width = width
        self.normalize_input = normalize_input
        self.dispnetc = DispNetC(width=width, corr_displacements=corr_displacements)
        self.dispnetres = DispNetRes(width=width)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        init_dispnet_weights(self)

    def forward(self, left: Tensor, right: Tensor) -> dict[str, Any]:
        h, w = left.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f"FADNet needs H and W divisible by {self.size_divisor}, got {h}x{w}; pad the input "
                "(StereoModule does this for evaluation)"
            )
        if self.normalize_input:
            left = (left - self.mean) / self.std
            right = (right - self.mean) / self.std
        stage1 = self.dispnetc(left, right)
        disparity1 = stage1[0]
        warped = warp_right_to_left(right, disparity1)
        error = channel_norm(left - warped)
        stage2 = self.dispnetres(torch.cat((left, right, warped, disparity1, error), dim=1), stage1)
        return {"disparity": stage2[0], "stage1": stage1, "stage2": stage2}

    @classmethod
    def from_official_checkpoint(cls, path: str | os.PathLike[str], weights_only: bool = True, **kwargs: Any) -> FADNet:
        """Build the paper-size model and load an official FADNet checkpoint (e.g. the released ``fadnet.pth``).

        Args:
            path: Checkpoint written by the official code (``{"state_dict": ...}`` with ``module.`` keys, or a bare
                state dict).
            weights_only: Passed to :func:`torch.load`. Keep ``True`` unless the file is trusted and its metadata
                cannot be unpickled safely.
            **kwargs: Extra :class:`FADNet` arguments (e.g. ``normalize_input``); the released weights need the
                default ``width=1``, a mismatch raises :class:`ValueError` naming the tensors.

        The weights are mapped with :func:`checkpoint_filter_fn` and loaded with ``strict=True``. Inputs stay
        [0, 1] images: the ImageNet normalisation the official loaders apply is done inside the model.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"FADNet checkpoint `path` not found: {path!r}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
        except pickle.UnpicklingError as error:
            raise RuntimeError(
                f"{path!r} holds objects that torch.load(weights_only=True) refuses; if you trust the file, call "
                "FADNet.from_official_checkpoint(path, weights_only=False)"
            ) from error
        if not isinstance(checkpoint, Mapping):
            raise TypeError(f"{path!r} does not hold a state dict (got {type(checkpoint).__name__})")
        model = cls(**kwargs)
        model.load_state_dict(checkpoint_filter_fn(checkpoint, model), strict=True)
        return model


_OFFICIAL_STAGES = ("dispnetc.", "dispnetres.")


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module | None = None) -> dict[str, Any]:
    """Map an official FADNet (ICRA 2020, HKBU-HPML/FADNet ``main``) state dict to :class:`FADNet` keys.

    Handles ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers and the DataParallel ``module.`` prefix. In both
    stages ``conv4 .. conv6_1`` move to ``tail.*`` and the decoder layers (``upconvK``, ``upflow{K+1}toK``,
    ``iconvK``, ``pred_flowK``/``pred_resK``, ``*6``) to ``decoder.*``; the other names are identical. BatchNorm
    ``num_batches_tracked`` counters absent from old checkpoints are set to 0 (they do not affect the outputs).

    Args:
        state_dict: The official state dict or checkpoint.
        model: Model whose keys and shapes are the target (default: the paper-size :class:`FADNet`, built on the
            meta device).

    Raises:
        KeyError: naming every official key with no counterpart in ``model`` and every key of ``model`` that the
            checkpoint does not provide (nothing is dropped silently).
        ValueError: naming every tensor whose shape differs from ``model``'s.
    """
    if model is None:
        with torch.device("meta"):
            model = FADNet()
    expected = model.state_dict()
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in unwrap_state_dict(state_dict).items():
        stage = next((s for s in _OFFICIAL_STAGES if key.startswith(s)), None)
        ours = stage + map_official_dispnet_key(key[len(stage) :]) if stage else None
        if ours is None or ours not in expected or ours in out:
            unknown.append(key)
        else:
            out[ours] = value
    missing = []
    for key in expected:
        if key in out:
            continue
        if key.endswith(".num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        else:
            missing.append(key)
    if unknown or missing:
        raise KeyError(
            f"official FADNet checkpoint does not match the model: unexpected keys {unknown} (official names), "
            f"missing keys {missing} (our names)"
        )
    mismatched = [
        f"{key}: {tuple(value.shape)} vs {tuple(expected[key].shape)}"
        for key, value in out.items()
        if isinstance(value, Tensor) and value.shape != expected[key].shape
    ]
    if mismatched:
        raise ValueError(
            f"official FADNet checkpoint has tensors of the wrong shape (checkpoint vs model): {mismatched}"
        )
    return out


def _create_fadnet(**kwargs: Any) -> FADNet:
    return FADNet(**kwargs)


@register_model
def fadnet(**kwargs: Any) -> FADNet:
    """FADNet as in the paper (144,303,840 parameters)."""
    return _create_fadnet(**{"width": 1.0, **kwargs})


@register_model
def fadnet_w050(**kwargs: Any) -> FADNet:
    """FADNet at half width (about 1/4 of the parameters)."""
    return _create_fadnet(**{"width": 0.5, **kwargs})


@register_model
def fadnet_w025(**kwargs: Any) -> FADNet:
    """FADNet at quarter width: the CPU demo model."""
    return _create_fadnet(**{"width": 0.25, **kwargs})


@register_model
def fadnet_tiny(**kwargs: Any) -> FADNet:
    """Tiny FADNet (width 1/16) for unit tests."""
    return _create_fadnet(**{"width": 0.0625, **kwargs})
