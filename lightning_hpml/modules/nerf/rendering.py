"""Rays from pinhole cameras and NeRF volume rendering with stratified samples.

Cameras follow the OpenCV convention (x right, y down, z forward), as CF-NeRF: the ray through pixel ``(u, v)`` of a
camera with camera-to-world ``[R | t]`` starts at ``t`` with direction ``R ((u - cx) / f, (v - cy) / f, 1)``; samples
are spaced along that direction, so "depth" is camera-frame z. Rendering composites ``alpha = 1 - exp(-relu(sigma
+ noise) * delta)`` front to back (NeRF), with the last interval open-ended (1e10).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_hpml.modules.nerf.radiance_field import RadianceField

__all__ = ["pixel_rays", "render_rays"]


def pixel_rays(pixels: Tensor, focal: Tensor, centre: Tensor, camera_to_world: Tensor) -> tuple[Tensor, Tensor]:
    """Origins and directions (N, 3) of pixels (N, 2) for per-ray ``camera_to_world`` (N, 3, 4) or (3, 4)."""
    local = torch.cat([(pixels - centre) / focal, torch.ones_like(pixels[:, :1])], -1)
    rotation, translation = camera_to_world[..., :3, :3], camera_to_world[..., :3, 3]
    directions = (rotation @ local[..., None])[..., 0] if rotation.ndim == 3 else local @ rotation.T
    return translation.expand_as(directions), directions


def render_rays(
    field: RadianceField,
    origins: Tensor,
    directions: Tensor,
    near: float,
    far: float,
    samples: int,
    perturb: bool = True,
    sigma_noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Render rays (N, 3): ``rgb`` (N, 3), ``depth`` (N,) camera-frame z, ``opacity`` (N,). Random jitter and
    density noise come from ``generator`` when given (reproducible steps)."""
    bins = torch.linspace(0.0, 1.0, samples + 1, device=origins.device, dtype=origins.dtype)
    lower, upper = bins[:-1], bins[1:]
    if perturb:
        jitter = torch.rand(origins.shape[0], samples, device=origins.device, generator=generator)
        t = lower + (upper - lower) * jitter
    else:
        t = ((lower + upper) / 2).expand(origins.shape[0], samples)
    z = near + (far - near) * t  # (N, S)
    points = origins[:, None] + directions[:, None] * z[..., None]
    unit = directions / directions.norm(dim=-1, keepdim=True)
    rgb, sigma = field(points, unit[:, None].expand_as(points))
    if sigma_noise_std > 0:
        sigma = sigma + torch.randn(sigma.shape, device=sigma.device, generator=generator) * sigma_noise_std
    delta = torch.cat([z[:, 1:] - z[:, :-1], torch.full_like(z[:, :1], 1e10)], -1) * directions.norm(dim=-1)[:, None]
    alpha = 1.0 - torch.exp(-torch.relu(sigma) * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
    weights = alpha * transmittance
    return {
        "rgb": (weights[..., None] * rgb).sum(1),
        "depth": (weights * z).sum(1),
        "opacity": weights.sum(1),
    }
