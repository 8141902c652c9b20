"""FADNet's training augmentation for stereo sample dicts: a random crop and per-view photometric noise.

Training (FADNet, Wang et al., ICRA 2020; official loaders in https://github.com/HKBU-HPML/FADNet):

- **Random crop** to ``crop_size`` with the same window for both views, the disparity and the valid mask, so the
  ground truth stays aligned. For KITTI fine-tuning the window's top is kept at or below 25 % of the image height
  (``min_top_fraction=0.25``): the LiDAR-derived ground truth has no points in the sky.
- **Colour augmentation**, drawn *independently* for the left and the right image (real stereo rigs have two
  sensors with different gain and white balance, and the network must match across them): brightness,
  contrast and saturation jitter of strength 0.4 in random order, then AlexNet-style PCA lighting noise
  (std 0.1), clamped to [0, 1].
- **No flips**: a horizontal flip swaps the roles of the views and a vertical flip breaks the rectification.

Randomness comes from torch's global RNG (``torch.rand``/``torch.randint``/``ColorJitter``), so it follows
``torch.manual_seed``, DataLoader worker seeding and the per-sample seeding of
:mod:`lightning_hpml.datamodules.stereo.sampling`.

Evaluation uses **no transform**: full images are fed and the stereo models pad them to a multiple of 64 and
crop their prediction back to the input size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

__all__ = ["ColorAugment", "RandomCrop", "StereoTrainTransform"]

# PCA of ImageNet RGB pixel values used for "lighting" noise in AlexNet (Krizhevsky, Sutskever and Hinton,
# "ImageNet Classification with Deep Convolutional Neural Networks", NeurIPS 2012, section 4.1); these are the
# standard published constants (eigenvalues and eigenvectors as columns, RGB order, pixels in [0, 1]).
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class RandomCrop:
    """Crop every image-shaped entry of a sample dict with one random window.

    Args:
        crop_size: ``(height, width)`` of the window.
        min_top_fraction: The window's top row is at least ``ceil(min_top_fraction * H)``. When the image is too
            short for that and the crop together, the window is aligned with the image bottom (the closest
            allowed position) instead.

    Raises:
        ValueError: ``crop_size`` is not two positive integers or ``min_top_fraction`` is outside [0, 1).
    """

    def __init__(self, crop_size: tuple[int, int], min_top_fraction: float = 0.0) -> None:
        if len(crop_size) != 2 or not all(isinstance(v, int) and v > 0 for v in crop_size):
            raise ValueError(f"`crop_size` must be two positive integers (height, width), got {crop_size!r}")
        if not 0.0 <= min_top_fraction < 1.0:
            raise ValueError(f"`min_top_fraction` must be in [0, 1), got {min_top_fraction!r}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.min_top_fraction = float(min_top_fraction)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``sample`` with every tensor of the image's size (views, disparity, masks, normals, ...)
        cropped with the same window.

        Raises:
            ValueError: The crop is larger than the image (the message names ``crop_size``, the image size and
                the sample).
        """
        height, width = sample["left"].shape[-2:]
        crop_h, crop_w = self.crop_size
        if crop_h > height or crop_w > width:
            raise ValueError(
                f"sample {sample.get('name', '?')!r}: crop_size={self.crop_size} (height, width) is larger than "
                f"the image ({height}, {width}); choose a smaller crop_size"
            )
        top_hi = height - crop_h
        top_lo = min(math.ceil(self.min_top_fraction * height), top_hi)
        top = int(torch.randint(top_lo, top_hi + 1, ()).item())
        left = int(torch.randint(0, width - crop_w + 1, ()).item())
        out = dict(sample)
        for key, value in sample.items():
            if isinstance(value, Tensor) and value.dim() >= 2 and tuple(value.shape[-2:]) == (height, width):
                out[key] = value[..., top : top + crop_h, left : left + crop_w]
        return out


class ColorAugment:
    """Photometric noise for one image: random-order brightness/contrast/saturation jitter plus PCA lighting.

    Args:
        strength: Jitter strength ``s``: each factor is drawn uniformly from ``[1 - s, 1 + s]``.
        lighting_std: Standard deviation of the AlexNet PCA lighting coefficients.
    """

    def __init__(self, strength: float = 0.4, lighting_std: float = 0.1) -> None:
        if strength < 0 or lighting_std < 0:
            raise ValueError(
                f"`strength` and `lighting_std` must be non-negative, got {strength!r} and {lighting_std!r}"
            )
        self.jitter = v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength)
        self.lighting_std = float(lighting_std)
        self._eigval = torch.tensor(IMAGENET_PCA_EIGVAL, dtype=torch.float32)
        self._eigvec = torch.tensor(IMAGENET_PCA_EIGVEC, dtype=torch.float32)

    def __call__(self, image: Tensor) -> Tensor:
        """Augment a float image ``(3, H, W)`` in [0, 1]; returns a new tensor in [0, 1]."""
        image = self.jitter(image)
        if self.lighting_std > 0:
            alpha = torch.randn(3) * self.lighting_std
            shift = self._eigvec @ (alpha * self._eigval)  # one RGB offset for the whole image
            image = image + shift.to(image.dtype).view(3, 1, 1)
        return image.clamp(0.0, 1.0)


class StereoTrainTransform:
    """FADNet's training transform on a stereo sample dict: random crop, then independent colour noise per view.

    Args:
        crop_size: ``(height, width)`` of the training crop.
        min_top_fraction: See :class:`RandomCrop` (KITTI: 0.25).
        color: Apply :class:`ColorAugment` to each view with its own random draws.
        strength: Colour jitter strength.
        lighting_std: PCA lighting noise standard deviation.
    """

    def __init__(
        self,
        crop_size: tuple[int, int],
        min_top_fraction: float = 0.0,
        color: bool = True,
        strength: float = 0.4,
        lighting_std: float = 0.1,
    ) -> None:
        self.crop = RandomCrop(crop_size, min_top_fraction)
        self.color = ColorAugment(strength, lighting_std) if color else None

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Crop ``sample`` and, if enabled, colour-augment ``left`` and ``right`` separately."""
        out = self.crop(sample)
        if self.color is not None:
            out["left"] = self.color(out["left"])
            out["right"] = self.color(out["right"])
        return out
