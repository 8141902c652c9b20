"""Shared base of the panorama depth DataModules: list of (RGB, depth) files per split -> batches.

Batch keys: ``image`` (B, 3, H, W) float32 in [0, 1], ``depth`` (B, 1, H, W) metres (0 where invalid), ``valid``
(B, 1, H, W) bool = the reader's valid pixels with ``0 < depth <= max_depth`` (10 m, the benchmarks' cut), and
``path`` (list of RGB file names). Training augmentation, as UniFuse: a random yaw rotation (``roll`` along the
width, exact for an equirectangular image) and a horizontal flip, drawn from the DataLoader worker's torch RNG.
``root=None`` writes a synthetic tree in the subclass's layout to the cache folder once and reads it with the same
loader.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lightning_hpml.datamodules.formats.image import read_rgb
from lightning_hpml.datamodules.synthetic.cached_tree import SyntheticTreeMixin
from lightning_hpml.datamodules.synthetic.panorama_writer import write_panorama_dataset

__all__ = ["PanoramaDataModule", "PanoramaDataset"]

SPLITS = ("train", "val", "test")


class PanoramaDataset(Dataset):
    def __init__(
        self,
        samples: list[tuple[Path, Path]],
        read_depth,
        image_size: tuple[int, int] | None,
        max_depth: float,
        augment: bool,
    ) -> None:
        self.samples = samples
        self.read_depth = read_depth
        self.image_size = image_size
        self.max_depth = max_depth
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        rgb_path, depth_path = self.samples[index]
        rgb = torch.from_numpy(read_rgb(rgb_path)).permute(2, 0, 1).float() / 255.0
        depth, valid = self.read_depth(depth_path)
        if depth.shape != tuple(rgb.shape[1:]):
            raise ValueError(f"{depth_path}: depth is {depth.shape}, its image {rgb_path} is {tuple(rgb.shape[1:])}")
        depth = torch.from_numpy(np.ascontiguousarray(depth))[None]
        valid = torch.from_numpy(np.ascontiguousarray(valid))[None] & (depth > 0) & (depth <= self.max_depth)
        if self.image_size is not None and tuple(rgb.shape[1:]) != tuple(self.image_size):
            rgb = F.interpolate(rgb[None], size=self.image_size, mode="bilinear", align_corners=False, antialias=True)[
                0
            ]
            depth = F.interpolate(depth[None], size=self.image_size, mode="nearest")[0]
            valid = F.interpolate(valid[None].float(), size=self.image_size, mode="nearest")[0] > 0.5
        if self.augment:
            shift = int(torch.randint(rgb.shape[-1], ()))
            rgb, depth, valid = (t.roll(shift, dims=-1) for t in (rgb, depth, valid))
            if bool(torch.rand(()) < 0.5):
                rgb, depth, valid = (t.flip(-1) for t in (rgb, depth, valid))
        depth = torch.where(valid, depth, torch.zeros_like(depth))
        return {
            "image": rgb.contiguous(),
            "depth": depth.contiguous(),
            "valid": valid.contiguous(),
            "path": str(rgb_path),
        }


class PanoramaDataModule(SyntheticTreeMixin, L.LightningDataModule, ABC):
    """Args:
    root: The dataset as distributed (``None``: synthetic data in this dataset's layout).
    image_size: Resize every panorama to ``(H, W)`` (``None``: native size).
    batch_size, num_workers: DataLoader settings.
    max_depth: Depths beyond this (metres) are not valid ground truth (10 m in the benchmarks).
    augment: Random yaw roll and horizontal flip for training.
    synthetic_counts, synthetic_size, synthetic_seed: The synthetic tree (train, val, test panoramas; (H, W)).
    synthetic_dir: Where ``root=None`` writes its tree (default: a per-options cache folder).
    """

    layout: str = ""

    def __init__(
        self,
        root: str | None = None,
        image_size: tuple[int, int] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        max_depth: float = 10.0,
        augment: bool = True,
        synthetic_counts: tuple[int, int, int] = (16, 4, 4),
        synthetic_size: tuple[int, int] = (64, 128),
        synthetic_seed: int = 0,
        synthetic_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.synthetic_dir = synthetic_dir
        self.image_size = tuple(image_size) if image_size is not None else None
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_depth = max_depth
        self.augment = augment
        self.synthetic = {
            "counts": tuple(synthetic_counts),
            "height": synthetic_size[0],
            "width": synthetic_size[1],
            "seed": synthetic_seed,
        }

    @abstractmethod
    def samples(self, root: Path, split: str) -> list[tuple[Path, Path]]:
        """(RGB file, depth file) pairs of ``split`` under ``root``; raises FileNotFoundError listing what is missing."""

    @abstractmethod
    def read_depth(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Decode one depth file into metres and a validity mask."""

    @property
    def synthetic_folder(self) -> str:
        return f"panorama-{self.layout}"

    def resolved_synthetic_options(self) -> dict:
        return {"layout": self.layout, **self.synthetic}

    def write_synthetic_tree(self, folder: Path) -> None:
        write_panorama_dataset(folder, self.layout, **self.synthetic)

    def setup(self, stage: str) -> None:
        root = self.data_root
        if not root.is_dir():
            raise FileNotFoundError(f"{type(self).__name__}: dataset root {root} does not exist")
        self.datasets = {
            split: PanoramaDataset(
                self.samples(root, split),
                self.read_depth,
                self.image_size,
                self.max_depth,
                augment=self.augment and split == "train",
            )
            for split in SPLITS
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=shuffle,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def require_samples(found: list[tuple[Path, Path]], what: str) -> list[tuple[Path, Path]]:
    """Refuse an empty split and pairs whose depth file is missing, naming them."""
    if not found:
        raise FileNotFoundError(f"no panoramas found: looked for {what}")
    missing = [str(d) for _, d in found if not d.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} depth files are missing, e.g. {missing[:3]}")
    return found
