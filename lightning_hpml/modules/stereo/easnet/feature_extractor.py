"""EASNet feature pyramid: four stages of MBConv blocks at 1/3, 1/6, 1/12 and 1/24 resolution.

Facts from HKBU-HPML/EASNet ``ofa/stereo_matching/elastic_nn/networks/ofa_aanet.py`` (``ConstructFeatureNet``):
stage widths ``(24, 32, 64, 128)``, first-block strides ``(3, 2, 2, 2)``, squeeze-excite in stages 2 and 4, ReLU,
up to 4 blocks per stage. Reimplemented, no code copied. Unlike the official sub-net (a flat block list whose stage
ends are found by comparing feature widths at run time), the plain extractor keeps explicit stages.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_hpml.modules.stereo.easnet.ofa_blocks import DynamicMBConv, MBConv, ResidualBlock, hidden_width

__all__ = ["STAGE_STRIDES", "STAGE_USE_SE", "STAGE_WIDTHS", "ElasticFeatureExtractor", "FeatureExtractor"]

STAGE_WIDTHS = (24, 32, 64, 128)
STAGE_STRIDES = (3, 2, 2, 2)
STAGE_USE_SE = (False, True, False, True)


class ElasticFeatureExtractor(nn.Module):
    """Elastic feature pyramid (the supernet's feature extractor).

    Args:
        kernel_sizes: Selectable depthwise kernel sizes.
        expand_ratios: Selectable expand ratios.
        max_depth: Blocks per stage.
        num_stages: Number of stages (pyramid levels).

    ``active_depths`` (blocks used per stage) and ``active_scales`` (stages used) select the sub-network; the blocks
    hold their own active kernel size and expand ratio.
    """

    def __init__(
        self, kernel_sizes: Sequence[int], expand_ratios: Sequence[float], max_depth: int = 4, num_stages: int = 4
    ) -> None:
        super().__init__()
        if not 1 <= num_stages <= len(STAGE_WIDTHS):
            raise ValueError(f"`num_stages` must be in [1, {len(STAGE_WIDTHS)}], got {num_stages!r}")
        self.max_depth, self.num_stages = max_depth, num_stages
        self.blocks = nn.ModuleList()
        in_ch = 3
        for stage in range(num_stages):
            width = STAGE_WIDTHS[stage]
            for i in range(max_depth):
                stride = STAGE_STRIDES[stage] if i == 0 else 1
                conv = DynamicMBConv(in_ch, width, kernel_sizes, expand_ratios, stride, STAGE_USE_SE[stage])
                self.blocks.append(ResidualBlock(conv, identity_shortcut=stride == 1 and in_ch == width))
                in_ch = width
        self.active_depths = [max_depth] * num_stages
        self.active_scales = num_stages

    def stage_blocks(self, stage: int) -> list[ResidualBlock]:
        """The active blocks of ``stage``."""
        start = stage * self.max_depth
        return list(self.blocks[start : start + self.active_depths[stage]])

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in range(self.active_scales):
            for block in self.stage_blocks(stage):
                x = block(x)
            features.append(x)
        return features

    def get_active_subnet(self) -> FeatureExtractor:
        """A plain :class:`FeatureExtractor` with the active stages/blocks and their weights."""
        stages = []
        for stage in range(self.active_scales):
            stages.append(
                nn.Sequential(
                    *[ResidualBlock(b.conv.get_active_subnet(), b.identity_shortcut) for b in self.stage_blocks(stage)]
                )
            )
        return FeatureExtractor(stages)


class FeatureExtractor(nn.Module):
    """Plain feature pyramid: one ``nn.Sequential`` of residual MBConv blocks per stage; returns every stage output."""

    def __init__(self, stages: Sequence[nn.Sequential]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    @classmethod
    def from_config(cls, ks: Sequence[int], e: Sequence[float], d: Sequence[int], s: int, max_depth: int = 4):
        """Build (randomly initialised) from per-block ``ks``/``e`` (``max_depth`` entries per stage), ``d``, ``s``."""
        stages, in_ch = [], 3
        for stage in range(s):
            blocks = []
            width = STAGE_WIDTHS[stage]
            for i in range(d[stage]):
                idx = stage * max_depth + i
                stride = STAGE_STRIDES[stage] if i == 0 else 1
                mid = hidden_width(in_ch, e[idx])
                conv = MBConv(in_ch, width, ks[idx], stride, mid, STAGE_USE_SE[stage])
                blocks.append(ResidualBlock(conv, identity_shortcut=stride == 1 and in_ch == width))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        return cls(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
