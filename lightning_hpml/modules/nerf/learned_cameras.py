"""Camera parameters CF-NeRF learns: one shared focal length and a pose per image.

As the official ``models/cam_params.py`` (NeRFmm's representation): the focal is ``f^2 * (W + H) / 2`` pixels for the
current image size with ``f`` initialised to 1 (a field of view of about 53 degrees), the principal point is the image
centre, and each image has a camera-to-world rotation (axis-angle) and translation, both starting at identity/zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LearnedCameras", "axis_angle_to_matrix"]


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula for (..., 3) axis-angle vectors -> (..., 3, 3), differentiable at zero."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis_angle.shape[:-1], 3, 3)
    small = angle_sq < 1e-8
    angle = angle_sq.clamp_min(1e-8).sqrt()
    a = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    b = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / angle_sq.clamp_min(1e-8))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


class LearnedCameras(nn.Module):
    """Args:
    num_images: Images in the sequence.
    """

    def __init__(self, num_images: int) -> None:
        super().__init__()
        self.focal_factor = nn.Parameter(torch.ones(()))
        self.rotations = nn.Parameter(torch.zeros(num_images, 3))
        self.translations = nn.Parameter(torch.zeros(num_images, 3))

    def focal(self, height: int, width: int) -> Tensor:
        return self.focal_factor**2 * (width + height) / 2.0

    def intrinsic(self, height: int, width: int) -> Tensor:
        """(3, 3) pixel intrinsics for an image of this size (pixel centres at integers)."""
        f = self.focal(height, width)
        k = torch.zeros(3, 3, device=f.device, dtype=f.dtype)
        k[0, 0], k[1, 1], k[2, 2] = f, f, 1.0
        k[0, 2], k[1, 2] = (width - 1) / 2.0, (height - 1) / 2.0
        return k

    def camera_to_world(self, index: Tensor | None = None) -> Tensor:
        """(N, 3, 4) poses of the images ``index`` (all images if ``None``)."""
        rotations = self.rotations if index is None else self.rotations[index]
        translations = self.translations if index is None else self.translations[index]
        return torch.cat([axis_angle_to_matrix(rotations), translations[..., None]], -1)

    @torch.no_grad()
    def reset(self) -> None:
        """Back to the initial focal factor 1 and identity poses."""
        self.focal_factor.fill_(1.0)
        self.rotations.zero_()
        self.translations.zero_()

    @torch.no_grad()
    def copy_pose(self, source: int, target: int) -> None:
        """Start image ``target`` at the pose of image ``source`` (before registering it)."""
        self.rotations[target] = self.rotations[source]
        self.translations[target] = self.translations[source]
