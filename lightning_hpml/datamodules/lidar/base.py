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
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_hpml.datamodules.stereo.sampling import seeded_train_loader
from lightning_hpml.datamodules.synthetic.cached_tree import SyntheticTreeMixin

__all__ = ["STAGE_SPLITS", "LiDARDataModule", "check_lidar_arguments"]

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
"""The splits each Trainer stage builds."""


def check_lidar_arguments(
    point_cloud_range: Sequence[float],
    num_points: int | None,
    global_rotation: tuple[float, float] | None,
    global_scaling: tuple[float, float] | None,
    test_rotation: str,
    eval_batch_size: int | None,
    synthetic_options: dict | None,
    integers: dict[str, tuple[Any, int]],
) -> tuple[float, ...]:
    """Validate the arguments every LiDAR DataModule takes (``integers``: name -> (value, minimum)); returns the
    point-cloud range as floats.

    Raises:
        ValueError: naming the argument and what was expected.
    """
    pcr = tuple(float(v) for v in point_cloud_range)
    if len(pcr) != 6 or not all(pcr[i] < pcr[i + 3] for i in range(3)):
        raise ValueError(f"`point_cloud_range` must be (x_min, y_min, z_min, x_max, y_max, z_max), got {pcr!r}")
    if num_points is not None and (isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1):
        raise ValueError(f"`num_points` must be a positive integer or None, got {num_points!r}")
    for name, value in (("global_rotation", global_rotation), ("global_scaling", global_scaling)):
        if value is not None and (len(tuple(value)) != 2 or not value[0] <= value[1]):
            raise ValueError(f"`{name}` must be (low, high) with low <= high, or None; got {value!r}")
    if global_scaling is not None and not global_scaling[0] > 0:
        raise ValueError(f"`global_scaling` must be positive, got {global_scaling!r}")
    if test_rotation not in ("none", "random"):
        raise ValueError(f"`test_rotation` must be 'none' or 'random', got {test_rotation!r}")
    for arg, (value, minimum) in integers.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"`{arg}` must be an integer >= {minimum}, got {value!r}")
    if eval_batch_size is not None and (not isinstance(eval_batch_size, int) or eval_batch_size < 1):
        raise ValueError(f"`eval_batch_size` must be a positive integer or None, got {eval_batch_size!r}")
    if synthetic_options is not None and not isinstance(synthetic_options, dict):
        raise ValueError(f"`synthetic_options` must be a dict of writer arguments, got {synthetic_options!r}")
    return pcr


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
        return seeded_train_loader(
            self._dataset("train"), self.trainer, self.batch_size, self.num_workers, self.seed, self.collate_fn
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
