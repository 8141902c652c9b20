"""What the LiDAR DataModules share: the stage -> split map and the DataLoaders (the synthetic-tree cache comes from
:class:`~lightning_hpml.datamodules.synthetic.cached_tree.SyntheticTreeMixin`).

A subclass sets ``synthetic_folder`` (the cache folder's prefix) and ``collate_fn``, implements
``resolved_synthetic_options()``, ``write_synthetic_tree(folder)`` and ``build_dataset(split)``, and keeps ``root``,
``synthetic_dir``, ``datasets``, ``batch_size``, ``eval_batch_size``, ``num_workers`` and ``seed``. Training batches come from an
:class:`~lightning_hpml.datamodules.stereo.sampling.EpochSeededSampler` (samples are seeded by ``(epoch, index)``,
so resuming mid-training is exact); evaluation loaders keep the file order. Batches are collated by
:func:`~lightning_hpml.datamodules.lidar.kitti_object.kitti_object_collate`'s per-sample lists.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_hpml.datamodules.stereo.sampling import EpochSeededSampler
from lightning_hpml.datamodules.synthetic.cached_tree import SyntheticTreeMixin

__all__ = ["STAGE_SPLITS", "LiDARDataModule"]

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
"""The splits each Trainer stage builds."""


class LiDARDataModule(SyntheticTreeMixin, L.LightningDataModule, ABC):
    """Base of :class:`~lightning_hpml.datamodules.lidar.KITTIObjectDataModule` and ``NuScenesDataModule``."""

    synthetic_folder = "lidar"
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]]

    @abstractmethod
    def build_dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``train``, ``val``, ``test`` or ``predict``)."""

    def _check_stage(self, stage: str) -> tuple[str, ...]:
        """The splits of ``stage``; raises for an unknown stage or a missing synthetic tree."""
        if stage not in STAGE_SPLITS:
            raise ValueError(f"`stage` must be one of {sorted(STAGE_SPLITS)}, got {stage!r}")
        self._require_synthetic_tree()
        return STAGE_SPLITS[stage]

    def _dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            stage = next(s for s, splits in STAGE_SPLITS.items() if split in splits)
            raise RuntimeError(f"the {split!r} dataset is not built; call setup({stage!r}) first")
        return self.datasets[split]

    # ---------------------------------------------------------------------------------------------- dataloaders
    @override
    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        trainer = self.trainer
        world_size = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = EpochSeededSampler(dataset, num_replicas=world_size, rank=rank, seed=self.seed, shuffle=True)
        if len(sampler) < self.batch_size:
            raise ValueError(
                f"the train split has {len(sampler)} samples per process, fewer than batch_size={self.batch_size}; "
                "with drop_last=True no batch would be formed"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(
            self._dataset(split),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0 and split == "val",
            collate_fn=self.collate_fn,
        )

    @override
    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    @override
    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    @override
    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")
