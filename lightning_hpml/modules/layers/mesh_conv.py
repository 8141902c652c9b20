"""Convolution, pooling and unpooling on icosphere vertices (the layers SphereDepth's mesh network is built from).

A mesh convolution gathers each vertex's ordered 1-ring (:attr:`Icosphere.neighbours`: the vertex, then its
neighbours counter-clockwise from the north direction) and applies one linear map to the 7 stacked feature vectors,
the analogue of a 3x3 convolution with a fixed orientation (as in hexagonal sphere CNNs); the 12 vertices with five
neighbours repeat themselves in the seventh tap. Pooling takes the maximum over the 1-ring at the fine level and
keeps the coarse vertices (a prefix of the fine ones); unpooling copies coarse vertices and gives each new vertex the
mean of its two parents.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_hpml.modules.layers.icosphere import icosphere

__all__ = ["MeshConv", "MeshConvBlock", "MeshPool", "MeshUnpool"]


class MeshConv(nn.Module):
    """(B, C_in, V) -> (B, C_out, V) on the level-``level`` icosphere."""

    def __init__(self, in_channels: int, out_channels: int, level: int, bias: bool = True) -> None:
        super().__init__()
        self.level = level
        self.register_buffer("rings", icosphere(level)[level].neighbours.clone(), persistent=False)
        self.linear = nn.Linear(7 * in_channels, out_channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, v = x.shape
        if v != self.rings.shape[0]:
            raise ValueError(f"MeshConv(level={self.level}) expects {self.rings.shape[0]} vertices, got {v}")
        taps = x[:, :, self.rings]  # (B, C, V, 7)
        taps = taps.permute(0, 2, 3, 1).reshape(b, v, 7 * c)
        return self.linear(taps).transpose(1, 2)


class MeshConvBlock(nn.Sequential):
    """Two mesh convolutions with BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, level: int) -> None:
        super().__init__(
            MeshConv(in_channels, out_channels, level, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            MeshConv(out_channels, out_channels, level, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
        )


class MeshPool(nn.Module):
    """Level ``level`` -> ``level - 1``: max over the 1-ring, keep the coarse vertices."""

    def __init__(self, level: int) -> None:
        super().__init__()
        if level < 1:
            raise ValueError(f"cannot pool below level 0 (got level {level})")
        self.register_buffer("rings", icosphere(level)[level].neighbours.clone(), persistent=False)
        self.coarse = icosphere(level - 1)[level - 1].num_vertices

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, self.rings[: self.coarse]].amax(-1)


class MeshUnpool(nn.Module):
    """Level ``level - 1`` -> ``level``: coarse vertices copied, new ones the mean of their two parents."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.register_buffer("parents", icosphere(level)[level].parents.clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, x[:, :, self.parents].mean(-1)], dim=-1)
