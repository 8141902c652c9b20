"""SphereDepth: panorama depth predicted on a spherical mesh.

Yan et al., "SphereDepth: Panorama Depth Estimation from Spherical Domain", 3DV 2022. Official repository
https://github.com/Yannnnnnnnnnnn/SphereDepth holds only a README ("coming soon"), so this is built from the paper's
abstract (see ``shared/reference``): depth is predicted directly on a spherical mesh, the panorama and the mesh are
related by sampling, a deep network works in the spherical domain, and two hyper-parameters trade speed for accuracy.

Design choices (ours, each a guess where the paper's details could not be read):

- **Mesh**: an icosphere refined to ``mesh_level`` (``10 * 4**L + 2`` vertices); the follow-up SphereFusion uses an
  icosahedron with Loop-style subdivision.
- **Hyper-parameter 1, ``mesh_level``**: resolution of the output mesh (and of the network's finest level).
- **Hyper-parameter 2, ``sample_size``**: the panorama is area-resampled to ``(H, W)`` before its colours are
  sampled at the vertices; together with the mesh level it sets how much of the image the network sees.
- **Network**: a U-Net on the mesh: per level two mesh convolutions (ordered 1-ring, 7 taps) with BatchNorm and
  ReLU, max pooling over 1-rings down ``depth`` levels, unpooling by parent averages with skip connections, and a
  1x1 head predicting log-depth per vertex (depth = ``exp``). ImageNet normalisation is inside the model.
- **Output**: vertex depth ``(B, 1, V)`` and its barycentric projection to the input's equirectangular grid
  ``(B, 1, H, W)`` (loss and metrics are computed on the projection, as the benchmarks are on equirectangular GT).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_hpml.modules.layers.icosphere import icosphere, project_to_equirect, sample_equirect
from lightning_hpml.modules.layers.mesh_conv import MeshConv, MeshConvBlock, MeshPool, MeshUnpool
from lightning_hpml.modules.registry import register_model

__all__ = ["SphereDepth"]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class SphereDepth(nn.Module):
    """``image`` (B, 3, H, W) in [0, 1] -> ``{"vertex_depth": (B, 1, V), "depth": (B, 1, H, W)}`` in metres.

    Args:
        mesh_level: Icosphere level of the output (speed/accuracy hyper-parameter 1).
        sample_size: ``(H, W)`` the panorama is resampled to before vertex sampling (hyper-parameter 2;
            ``None``: the input size).
        width: Channels at the finest level (doubled per level down, capped at ``8 * width``).
        depth: Pooling steps of the U-Net (the coarsest level is ``mesh_level - depth`` >= 0).
    """

    def __init__(
        self, mesh_level: int = 6, sample_size: tuple[int, int] | None = (256, 512), width: int = 32, depth: int = 4
    ) -> None:
        super().__init__()
        if not 0 <= mesh_level - depth:
            raise ValueError(f"`depth` {depth} pools below level 0 from mesh_level {mesh_level}")
        self.mesh_level = mesh_level
        self.sample_size = tuple(sample_size) if sample_size is not None else None
        self.register_buffer("mean", torch.tensor(_MEAN)[None, :, None], persistent=False)
        self.register_buffer("std", torch.tensor(_STD)[None, :, None], persistent=False)
        self.register_buffer("vertices", icosphere(mesh_level)[mesh_level].vertices.float(), persistent=False)
        channels = [min(width * 2**i, 8 * width) for i in range(depth + 1)]
        levels = [mesh_level - i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        in_channels = 3
        for c, lvl in zip(channels, levels):
            self.encoders.append(MeshConvBlock(in_channels, c, lvl))
            in_channels = c
        self.pools = nn.ModuleList(MeshPool(lvl) for lvl in levels[:-1])
        self.unpools = nn.ModuleList(MeshUnpool(lvl) for lvl in reversed(levels[:-1]))
        self.decoders = nn.ModuleList(
            MeshConvBlock(channels[i + 1] + channels[i], channels[i], levels[i]) for i in reversed(range(depth))
        )
        self.head = MeshConv(channels[0], 1, mesh_level)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        colours = sample_equirect(image, self.vertices, self.sample_size)  # (B, 3, V)
        x = (colours - self.mean) / self.std
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x)
            if i < len(self.pools):
                skips.append(x)
                x = self.pools[i](x)
        for unpool, decoder in zip(self.unpools, self.decoders):
            x = decoder(torch.cat([unpool(x), skips.pop()], dim=1))
        vertex_depth = self.head(x).clamp(-5, 5).exp()
        depth = project_to_equirect(vertex_depth, self.mesh_level, image.shape[-2], image.shape[-1])
        return {"vertex_depth": vertex_depth, "depth": depth}


@register_model
def spheredepth(**kwargs) -> SphereDepth:
    """Default: level-6 mesh (40,962 vertices), 256x512 sampling, width 32, 4 pooling steps."""
    return SphereDepth(**kwargs)


@register_model
def spheredepth_tiny(**kwargs) -> SphereDepth:
    """Test size: level-4 mesh (2,562 vertices), 32x64 sampling, width 8, 2 pooling steps."""
    return SphereDepth(**{"mesh_level": 4, "sample_size": (32, 64), "width": 8, "depth": 2, **kwargs})
