"""A map-style dataset that reads :class:`StereoSample` files into the package's stereo batch dict.

Item keys (see DESIGN.md, "Batches are dicts"):

- ``left``, ``right``: float32 ``(3, H, W)`` RGB in [0, 1].
- ``disparity``: float32 ``(1, H, W)`` left-view disparity in pixels, 0 wherever ``valid`` is False (so no
  NaN/inf or out-of-range value can reach a loss; ``valid`` says which pixels are ground truth).
- ``valid``: bool ``(1, H, W)``: the file format's own validity (KITTI: non-zero pixel; PFM: finite value)
  and ``0 < d`` and, when ``max_disp`` is set, ``d < max_disp``.
- ``name``: the sample's output stem (where a prediction is written); ``index``: its position in the dataset.

Unlabelled samples (test/benchmark pairs, ``disparity is None``) have no ``disparity``/``valid`` keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_hpml.datamodules.formats import read_disparity, read_rgb
from lightning_hpml.datamodules.stereo.samples import StereoSample
from lightning_hpml.datamodules.stereo.sampling import sample_rng

__all__ = ["StereoDataset"]

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class StereoDataset(Dataset):
    """Stereo pairs (and ground truth, when present) read from disk on access.

    Indexing takes either an ``int`` or an ``(epoch, index)`` pair as yielded by
    :class:`~lightning_hpml.datamodules.stereo.sampling.EpochSeededSampler`; with a pair the transform runs under
    torch's RNG seeded from ``(seed, epoch, index)``, so the augmentation of a sample does not depend on worker
    processes and is the same after resuming from a checkpoint.

    Args:
        samples: The samples, all labelled or all unlabelled.
        transform: Applied to the item dict (tensors) before it is returned, e.g.
            :class:`~lightning_hpml.datamodules.stereo.transforms.StereoTrainTransform`.
        max_disp: Disparities at or above this are marked invalid (``None``: no upper limit).
        seed: Base seed for ``(epoch, index)`` keys.

    Raises:
        ValueError: ``samples`` is empty, mixes labelled and unlabelled samples, or ``max_disp`` is not positive.
    """

    def __init__(
        self,
        samples: Sequence[StereoSample],
        transform: Transform | None = None,
        max_disp: float | None = None,
        seed: int = 0,
    ) -> None:
        samples = list(samples)
        if not samples:
            raise ValueError("StereoDataset needs at least one sample, got an empty list")
        labelled = {s.disparity is not None for s in samples}
        if len(labelled) > 1:
            raise ValueError(
                "StereoDataset samples must be all labelled or all unlabelled (a batch cannot mix them); "
                f"got {sum(s.disparity is None for s in samples)} of {len(samples)} without disparity"
            )
        if max_disp is not None and not max_disp > 0:
            raise ValueError(f"`max_disp` must be positive or None, got {max_disp!r}")
        self.samples = samples
        self.transform = transform
        self.max_disp = max_disp
        self.seed = seed
        self.labelled = labelled.pop()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            epoch, index = key
            with sample_rng(self.seed, epoch, index):
                return self._item(index)
        return self._item(key)

    def load(self, index: int) -> dict[str, Any]:
        """Read sample ``index`` without the transform (the exact data on disk as tensors)."""
        sample = self.samples[index]
        left = read_rgb(sample.left)
        right = read_rgb(sample.right)
        if left.shape != right.shape:
            raise ValueError(
                f"{sample.right}: right image is {right.shape[1]}x{right.shape[0]} (WxH) but the left image "
                f"{sample.left} is {left.shape[1]}x{left.shape[0]}; a rectified pair must have equal sizes"
            )
        item: dict[str, Any] = {"left": _image_tensor(left), "right": _image_tensor(right)}
        if sample.disparity is not None:
            disp, valid = read_disparity(sample.disparity)
            if disp.shape != left.shape[:2]:
                raise ValueError(
                    f"{sample.disparity}: disparity is {disp.shape[1]}x{disp.shape[0]} (WxH) but the left image "
                    f"{sample.left} is {left.shape[1]}x{left.shape[0]}; expected equal sizes"
                )
            with np.errstate(invalid="ignore"):
                valid = valid & np.isfinite(disp) & (disp > 0)
                if self.max_disp is not None:
                    valid &= disp < self.max_disp
            disp = np.where(valid, disp, np.float32(0.0)).astype(np.float32, copy=False)
            item["disparity"] = torch.from_numpy(np.ascontiguousarray(disp))[None]
            item["valid"] = torch.from_numpy(np.ascontiguousarray(valid, dtype=bool))[None]
        item["name"] = sample.name
        item["index"] = index
        return item

    def _item(self, index: int) -> dict[str, Any]:
        item = self.load(index)
        if self.transform is not None:
            try:
                item = self.transform(item)
            except ValueError as err:
                raise ValueError(f"{self.samples[index].left}: {err}") from err
        return item


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` -> float32 ``(3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
