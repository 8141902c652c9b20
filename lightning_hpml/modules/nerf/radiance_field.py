"""The radiance field CF-NeRF optimises: NeRF's MLP with positional encoding, or a SIREN variant.

Follows NeRFmm / CF-NeRF's configs (``configs/nerf.yaml``, ``siren.yaml``): 8 layers of width 128 with a skip
connection into layer 4 (0-based, after 4 layers), positional encoding with 10 frequencies for positions and 4 for
view directions, density from a linear head (ReLU applied at rendering), colour from a 1-layer view-dependent branch
of half width with a sigmoid. ``siren=True`` replaces ReLU layers by sine layers (first-layer ``w0`` 20 as the
official code effectively uses, later layers 1) and drops the positional encoding, as NeRFmm's SirenNeRF does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RadianceField", "positional_encoding"]


def positional_encoding(x: Tensor, frequencies: int) -> Tensor:
    """``[x, sin(2^k x), cos(2^k x)]`` for k < frequencies (NeRF's encoding without the pi factor, as NeRFmm)."""
    if frequencies == 0:
        return x
    scales = 2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype)
    angles = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], -1)


class SineLayer(nn.Linear):
    """``sin(w0 * (W x + b))`` with SIREN's initialisation."""

    def __init__(self, in_features: int, out_features: int, w0: float, first: bool) -> None:
        self.w0, self.first = w0, first  # read by reset_parameters, which nn.Linear's constructor calls
        super().__init__(in_features, out_features)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        bound = 1.0 / self.in_features if self.first else math.sqrt(6.0 / self.in_features) / self.w0
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * super().forward(x))


class RadianceField(nn.Module):
    """Maps positions (..., 3) and unit view directions (..., 3) to ``(rgb (..., 3) in [0, 1], sigma (...))``.

    Args:
        width, depth, skip: MLP width, number of layers, and the layer whose input is re-concatenated with the
            encoded position.
        position_frequencies, direction_frequencies: Positional-encoding frequencies (10 and 4).
        siren: Sine layers instead of ReLU layers (no positional encoding for positions).
        first_w0: SIREN's first-layer frequency.
    """

    def __init__(
        self,
        width: int = 128,
        depth: int = 8,
        skip: int = 4,
        position_frequencies: int = 10,
        direction_frequencies: int = 4,
        siren: bool = False,
        first_w0: float = 20.0,
    ) -> None:
        super().__init__()
        self.position_frequencies = 0 if siren else position_frequencies
        self.direction_frequencies = direction_frequencies
        self.skip = skip
        position_dim = 3 * (1 + 2 * self.position_frequencies)
        direction_dim = 3 * (1 + 2 * direction_frequencies)
        layers = []
        for i in range(depth):
            in_features = position_dim if i == 0 else width + (position_dim if i == skip else 0)
            if siren:
                layers.append(SineLayer(in_features, width, first_w0 if i == 0 else 1.0, first=i == 0))
            else:
                layers.append(nn.Sequential(nn.Linear(in_features, width), nn.ReLU(inplace=True)))
        self.layers = nn.ModuleList(layers)
        self.sigma = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.colour = nn.Sequential(
            nn.Linear(width + direction_dim, width // 2), nn.ReLU(inplace=True), nn.Linear(width // 2, 3), nn.Sigmoid()
        )

    def forward(self, positions: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        encoded = positional_encoding(positions, self.position_frequencies)
        x = encoded
        for i, layer in enumerate(self.layers):
            if i == self.skip and i > 0:
                x = torch.cat([x, encoded], -1)
            x = layer(x)
        sigma = self.sigma(x)[..., 0]
        view = positional_encoding(directions, self.direction_frequencies)
        rgb = self.colour(torch.cat([self.feature(x), view], -1))
        return rgb, sigma
