"""AANet correlation cost-volume pyramid (``CostVolumePyramid``): one-sided, channel-mean dot product per scale.

Facts from HKBU-HPML/EASNet ``ofa/stereo_matching/networks/cost.py``; reimplemented with the shared
:func:`lightning_hpml.modules.layers.correlation_1d`, no code copied. Scale ``s`` (resolution ``1/(3*2^s)``) has
``max_disp // 2^s`` candidates (64, 32, 16, 8 for a full-resolution range of 192 px).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_hpml.modules.layers import correlation_1d

__all__ = ["CostVolumePyramid"]


class CostVolumePyramid(nn.Module):
    """Correlation volumes ``(B, max_disp // 2^s, H_s, W_s)`` for each pair of pyramid features (finest first)."""

    def __init__(self, max_disp: int) -> None:
        super().__init__()
        if max_disp < 1:
            raise ValueError(f"`max_disp` must be >= 1, got {max_disp!r}")
        self.max_disp = max_disp

    def forward(self, left: Sequence[Tensor], right: Sequence[Tensor]) -> list[Tensor]:
        if len(left) != len(right):
            raise ValueError(f"left and right pyramids differ in length: {len(left)} vs {len(right)}")
        return [correlation_1d(fl, fr, self.max_disp // 2**s) for s, (fl, fr) in enumerate(zip(left, right))]
