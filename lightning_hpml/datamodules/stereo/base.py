"""Base LightningDataModule for stereo datasets: splits from a parser, FADNet augmentation, synthetic fallback.

A subclass knows one on-disk layout: it implements :meth:`StereoDataModule.parse` (split -> samples) and
:meth:`StereoDataModule.write_synthetic` (write a small tree in exactly that layout). Everything else is shared:

- ``root`` given: ``setup`` parses it (and checks every referenced file exists).
- ``root=None``: ``prepare_data`` writes a small synthetic tree with ``write_synthetic`` and ``setup`` reads it
  back with the *same* ``parse`` - there is one loading path. The tree goes to ``synthetic_dir`` or, by default,
  to ``$XDG_CACHE_HOME/lightning_hpml/synthetic/<dataset>-<hash>`` (``~/.cache`` without ``XDG_CACHE_HOME``),
  where the hash covers the writer options, so a finished tree is reused. A tree counts as finished only once
  its marker file (written last, holding the options) exists; it is written into a temporary sibling folder and
  renamed into place, so an interrupted run never leaves a half tree that looks complete.

Batches are dicts (see :mod:`lightning_hpml.datamodules.stereo.dataset`). Training batches are random crops of
``crop_size`` with FADNet's colour augmentation (``augment=True``), shuffled by an epoch-seeded sampler so that a
resumed run sees the same order and augmentation as an uninterrupted one. Evaluation batches are full images
without any transform; ``eval_batch_size > 1`` therefore needs all evaluation images to have one size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate
from typing_extensions import override

from lightning_hpml.datamodules.stereo.dataset import StereoDataset
from lightning_hpml.datamodules.stereo.samples import StereoSample, check_samples_exist
from lightning_hpml.datamodules.stereo.sampling import seeded_train_loader
from lightning_hpml.datamodules.stereo.transforms import StereoTrainTransform
from lightning_hpml.datamodules.synthetic.cached_tree import SyntheticTreeMixin

__all__ = ["Split", "StereoDataModule", "stereo_collate", "synthetic_image_size"]

Split = Literal["train", "val", "test", "predict"]

_STAGE_SPLITS: dict[str, tuple[Split, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
}


def synthetic_image_size(crop_size: tuple[int, int]) -> tuple[int, int]:
    """Default synthetic image size for a training crop: the crop plus a margin, so that random crops differ.

    Deriving it from the crop keeps ``root=None`` usable with any ``crop_size`` (a fixed small size would make
    the default 384 x 768 crop fail); pass ``height``/``width`` in ``synthetic_options`` for other sizes.
    """
    return crop_size[0] + 32, crop_size[1] + 64


def stereo_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate stereo items, refusing images of different sizes with a message that says how to fix it.

    Raises:
        ValueError: The items' images differ in size (real KITTI images do: 375x1242, 370x1224, ...).
    """
    shapes = {tuple(item["left"].shape) for item in items}
    if len(shapes) > 1:
        sizes = ", ".join(f"{item['name']}: {tuple(item['left'].shape[-2:])}" for item in items)
        raise ValueError(
            f"cannot batch stereo images of different sizes ({sizes}); use eval_batch_size=1 for datasets "
            "whose images differ in size, or crop them to one size"
        )
    return default_collate(items)


class StereoDataModule(SyntheticTreeMixin, L.LightningDataModule, ABC):
    """Shared behaviour of the stereo DataModules; subclasses implement one dataset layout.

    Subclasses set the class attributes, implement :meth:`parse` and :meth:`write_synthetic`, and may override
    :meth:`synthetic_defaults`. Their ``__init__`` takes these arguments plus their own and calls
    ``super().__init__``, which saves all of them as hyper-parameters.

    Args:
        root: Dataset root as its authors distribute it; ``None`` generates and uses a small synthetic tree.
        batch_size: Training batch size (per process).
        eval_batch_size: Validation/test/predict batch size; > 1 needs evaluation images of one size.
        num_workers: DataLoader worker processes (0 loads in the main process).
        crop_size: ``(height, width)`` of the random training crop.
        max_disp: Ground truth at or above this disparity is marked invalid; ``None`` keeps all positive values.
        augment: Apply FADNet's colour augmentation to training pairs (the crop is always applied, as it fixes
            the batch shape).
        synthetic_dir: Where ``root=None`` writes its synthetic tree (default: a per-options cache folder).
        synthetic_options: Keyword arguments for the synthetic writer, overriding :meth:`synthetic_defaults`.
        seed: Seed of the training shuffle and augmentation (and default seed of the synthetic writer).

    Raises:
        ValueError: An argument is out of range.
    """

    disparity_format: ClassVar[Literal["pfm", "kitti_png"]]
    """File format that predictions for this dataset are written in (read by ``DisparityWriter``)."""
    dataset_name: ClassVar[str] = "stereo"
    """Short name used for the synthetic cache folder."""
    expected_layout: ClassVar[str] = ""
    """Human-readable on-disk layout, quoted in missing-file errors."""
    min_top_fraction: ClassVar[float] = 0.0
    """Lowest allowed top of the training crop as a fraction of the image height."""

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 2,
        crop_size: tuple[int, int] = (384, 768),
        max_disp: float | None = 192.0,
        augment: bool = True,
        synthetic_dir: str | None = None,
        synthetic_options: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for arg, value, minimum in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"`{arg}` must be an integer >= {minimum}, got {value!r}")
        crop = tuple(crop_size)
        if len(crop) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in crop):
            raise ValueError(f"`crop_size` must be two positive integers (height, width), got {crop_size!r}")
        if max_disp is not None and not max_disp > 0:
            raise ValueError(f"`max_disp` must be a positive number of pixels or None, got {max_disp!r}")
        if synthetic_options is not None and not isinstance(synthetic_options, dict):
            raise ValueError(f"`synthetic_options` must be a dict of writer arguments, got {synthetic_options!r}")
        self.save_hyperparameters()
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.crop_size: tuple[int, int] = (int(crop[0]), int(crop[1]))
        self.max_disp = max_disp
        self.augment = augment
        self.synthetic_dir = synthetic_dir
        self.synthetic_options = dict(synthetic_options or {})
        self.seed = seed
        self.datasets: dict[Split, StereoDataset] = {}

    # ----------------------------------------------------------------------------------------------- subclass API
    @abstractmethod
    def parse(self, split: Split) -> list[StereoSample]:
        """Return the samples of ``split`` under :attr:`data_root` (file existence is checked by the caller).

        Raises:
            FileNotFoundError: The root or a folder the layout needs is missing (the message lists what was
                looked for).
            ValueError: The split is empty or cannot be formed from this configuration.
        """

    @abstractmethod
    def write_synthetic(self, root: Path, **options: Any) -> None:
        """Write a small synthetic dataset in this module's exact on-disk layout into ``root``."""

    def synthetic_defaults(self) -> dict[str, Any]:
        """Writer options used for ``root=None`` unless ``synthetic_options`` overrides them."""
        return {"seed": self.seed}

    # -------------------------------------------------------------------------------------------- data location
    def resolved_synthetic_options(self) -> dict[str, Any]:
        """The writer options actually used: :meth:`synthetic_defaults` updated by ``synthetic_options``."""
        return {**self.synthetic_defaults(), **self.synthetic_options}

    @property
    def synthetic_folder(self) -> str:
        """Prefix of the synthetic cache folder: the dataset's short name."""
        return self.dataset_name

    def write_synthetic_tree(self, folder: Path) -> None:
        self.write_synthetic(folder, **self.resolved_synthetic_options())

    # ----------------------------------------------------------------------------------------------- life cycle
    @override
    def setup(self, stage: str) -> None:
        """Build the datasets of ``stage``: fit -> train + val, validate -> val, test -> test, predict -> predict.

        Raises:
            ValueError: Unknown ``stage``.
            FileNotFoundError: The synthetic tree was not generated (``prepare_data`` not run), or dataset
                files are missing.
        """
        if stage not in _STAGE_SPLITS:
            raise ValueError(f"`stage` must be one of {sorted(_STAGE_SPLITS)}, got {stage!r}")
        self._require_synthetic_tree()
        for split in _STAGE_SPLITS[stage]:
            self.datasets[split] = self.build_dataset(split)

    def build_dataset(self, split: Split) -> StereoDataset:
        """Parse ``split``, check its files exist and wrap it in a dataset (training transform for ``train``)."""
        samples = self.parse(split)
        check_samples_exist(samples, self.expected_layout, where=self.data_root)
        transform = None
        if split == "train":
            transform = StereoTrainTransform(self.crop_size, self.min_top_fraction, color=self.augment)
        return StereoDataset(samples, transform=transform, max_disp=self.max_disp, seed=self.seed)

    def _dataset(self, split: Split) -> StereoDataset:
        if split not in self.datasets:
            stage = next(s for s, splits in _STAGE_SPLITS.items() if split in splits)
            raise RuntimeError(f"the {split!r} dataset is not built; call setup({stage!r}) first")
        return self.datasets[split]

    # ---------------------------------------------------------------------------------------------- dataloaders
    @override
    def train_dataloader(self) -> DataLoader:
        return seeded_train_loader(
            self._dataset("train"),
            self.trainer,
            self.batch_size,
            self.num_workers,
            self.seed,
            stereo_collate,
            pin_memory=torch.cuda.is_available(),
        )

    def _eval_loader(self, split: Split) -> DataLoader:
        return DataLoader(
            self._dataset(split),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0 and split == "val",  # val runs every epoch
            pin_memory=torch.cuda.is_available(),
            collate_fn=stereo_collate,
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
