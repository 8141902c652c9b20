"""What the LiDAR DataModules share: the synthetic-tree cache, the stage -> split map and the DataLoaders.

A subclass sets ``synthetic_name`` (for messages) and ``synthetic_folder`` (the cache folder's prefix), implements
``resolved_synthetic_options()`` (the writer's arguments), ``_write_synthetic(folder)`` and ``build_dataset(split)``,
and keeps ``root``, ``synthetic_dir``, ``datasets``, ``batch_size``, ``eval_batch_size``, ``num_workers`` and
``seed``. Training batches come from an
:class:`~lightning_hpml.datamodules.stereo.sampling.EpochSeededSampler` (samples are seeded by ``(epoch, index)``,
so resuming mid-training is exact); evaluation loaders keep the file order. Batches are collated by
:func:`~lightning_hpml.datamodules.lidar.kitti_object.kitti_object_collate`'s per-sample lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_hpml.datamodules.stereo.base import SYNTHETIC_MARKER, synthetic_cache_dir
from lightning_hpml.datamodules.stereo.sampling import EpochSeededSampler

__all__ = ["STAGE_SPLITS", "LiDARDataModule"]

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
"""The splits each Trainer stage builds."""
_SYNTHETIC_FORMAT_VERSION = 1


class LiDARDataModule(L.LightningDataModule):
    """Base of :class:`~lightning_hpml.datamodules.lidar.KITTIObjectDataModule` and ``NuScenesDataModule``."""

    synthetic_name = "LiDAR"
    synthetic_folder = "lidar"
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]]

    # ---------------------------------------------------------------------------------------- synthetic tree
    def resolved_synthetic_options(self) -> dict[str, Any]:
        raise NotImplementedError

    def _synthetic_key(self) -> dict[str, Any]:
        """What identifies a synthetic tree: the writer version, this class and the writer's options."""
        return {
            "version": _SYNTHETIC_FORMAT_VERSION,
            "writer": f"{type(self).__module__}.{type(self).__qualname__}",
            "options": json.loads(json.dumps(self.resolved_synthetic_options(), sort_keys=True, default=str)),
        }

    @property
    def data_root(self) -> Path:
        """``root``, or the synthetic tree's folder when ``root`` is ``None``."""
        if self.root is not None:
            return Path(self.root).expanduser()
        if self.synthetic_dir is not None:
            return Path(self.synthetic_dir).expanduser()
        digest = hashlib.sha256(json.dumps(self._synthetic_key(), sort_keys=True).encode()).hexdigest()[:12]
        return synthetic_cache_dir() / f"{self.synthetic_folder}-{digest}"

    def _write_synthetic(self, folder: Path) -> None:
        raise NotImplementedError

    def build_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def _synthetic_state(self, folder: Path) -> Literal["complete", "absent", "other"]:
        marker = folder / SYNTHETIC_MARKER
        if marker.is_file():
            try:
                stored = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return "other"
            return "complete" if stored == self._synthetic_key() else "other"
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            return "absent"
        return "other"

    @override
    def prepare_data(self) -> None:
        """With ``root=None``, write the synthetic tree (into a temporary sibling, renamed when complete).

        Raises:
            FileExistsError: ``synthetic_dir`` holds something else; nothing there is deleted.
        """
        if self.root is not None:
            return
        target = self.data_root
        state = self._synthetic_state(target)
        if state == "complete":
            return
        if state == "other":
            raise FileExistsError(
                f"synthetic_dir {target} is not empty and is not a complete synthetic {self.synthetic_name} tree "
                f"written with the options {self._synthetic_key()}; delete it or choose another synthetic_dir"
            )
        rank_zero_info(f"{type(self).__name__}: writing a synthetic dataset to {target} (once; reused afterwards)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            self._write_synthetic(tmp)
            (tmp / SYNTHETIC_MARKER).write_text(json.dumps(self._synthetic_key(), sort_keys=True), encoding="utf-8")
            if target.is_dir():
                target.rmdir()
            os.replace(tmp, target)
        except OSError:
            if self._synthetic_state(target) != "complete":
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _check_stage(self, stage: str) -> tuple[str, ...]:
        """The splits of ``stage``; raises for an unknown stage or a missing synthetic tree."""
        if stage not in STAGE_SPLITS:
            raise ValueError(f"`stage` must be one of {sorted(STAGE_SPLITS)}, got {stage!r}")
        if self.root is None and self._synthetic_state(self.data_root) != "complete":
            raise FileNotFoundError(
                f"no complete synthetic dataset at {self.data_root}; call prepare_data() first (the Trainer does)"
            )
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
