"""MPI Sintel stereo DataModule, reading the stereo training set as distributed.

Dataset: Butler, Wulff, Stanley and Black, "A naturalistic open source movie for optical flow evaluation",
ECCV 2012 (stereo training data released 2015, http://sintel.is.tue.mpg.de/stereo). Layout under ``root``::

    training/{clean_left,clean_right,final_left,final_right}/<scene>/frame_NNNN.png   RGB, 436 x 1024
    training/disparities/<scene>/frame_NNNN.png    left-view disparity, 8-bit RGB: d = R*4 + G/2^6 + B/2^14
    training/occlusions/<scene>/frame_NNNN.png     255 = visible in the left view, hidden in the right one
    training/outofframe/<scene>/frame_NNNN.png     255 = leaves the right image

23 scenes, 1,064 pairs (facts: OpenStereo ``data/Sintel``, IRS ``dataloader/SintelLoader.py``, EASNet
``ofa/utils/file_io.py``). ``render_pass`` picks the clean or final images; both share the ground truth.

Validity: a pixel is ground truth when ``0 < d < max_disp``, it is not out of frame and, with
``include_occluded=False``, not occluded. The default ``include_occluded=True`` follows the Sintel stereo
benchmark's main ("all") error, which counts occluded pixels and leaves out-of-frame pixels out (the dataset's
README: out-of-frame pixels "are not taken into account for the evaluation"); ``include_occluded=False`` gives
the non-occluded ("noc") error. FADNet and IRS evaluate Sintel through ``lists/Sintel_ALL.list`` with no mask at
all (every pixel with ``d < 192``), so their numbers also count out-of-frame pixels - a small difference.

Splits (there is no official one; the test set has no public ground truth and is not read here):

- ``split="scenes"`` (default): validate on the scenes :data:`SINTEL_VAL_SCENES` (ambush_6, bamboo_2, cave_4,
  market_6, temple_3: 210 pairs, one scene from five of the movie's locations) and train on the other 18 scenes
  (854 pairs). Scenes, not frames, are held out, because neighbouring frames of one shot are nearly identical.
  ``val_scenes`` replaces the choice.
- ``split="all"``: train and validate on all 1,064 pairs. Validation then measures fit; used alone (``validate``/
  ``test``) it is FADNet's cross-dataset evaluation on ``Sintel_ALL.list``.
- ``train_list``/``val_list``: FADNet-style list files (``left right disparity`` per line, relative to ``root``)
  replace the scan for their split; the masks are found by replacing the ``disparities`` folder of each
  disparity path with ``occlusions``/``outofframe`` (FADNet's own list roots at ``MPI-Sintel/`` without
  ``training/``; pass the folder holding ``MPI-Sintel`` as ``root``).

The ``test`` and ``predict`` stages use the val split. Sintel has no standard stereo submission format for
:class:`~lightning_hpml.callbacks.DisparityWriter` to follow, so predictions are written as PFM
(``disparity_format = "pfm"``) under ``<scene>/frame_NNNN`` (pass-independent). Training crops: 384 x 768, as
IRS's Sintel loader takes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import torch
from typing_extensions import override

from lightning_hpml.datamodules.formats.errors import FormatError
from lightning_hpml.datamodules.stereo.base import Split, StereoDataModule, synthetic_image_size
from lightning_hpml.datamodules.stereo.dataset import StereoDataset, Transform
from lightning_hpml.datamodules.stereo.samples import (
    StereoSample,
    check_samples_exist,
    default_sample_name,
    read_list_file,
)
from lightning_hpml.datamodules.stereo.transforms import StereoTrainTransform
from lightning_hpml.datamodules.synthetic.sintel_writer import SINTEL_PASSES, SINTEL_SCENES, write_sintel_stereo

__all__ = [
    "SINTEL_VAL_SCENES",
    "SintelSample",
    "SintelStereoDataModule",
    "SintelStereoDataset",
    "read_sintel_mask",
    "sintel_sample_name",
]

SINTEL_VAL_SCENES: tuple[str, ...] = ("ambush_6", "bamboo_2", "cave_4", "market_6", "temple_3")
"""Scenes held out for validation by ``split="scenes"`` (210 of the 1,064 pairs; our choice, see the docstring)."""

_FRAME = re.compile(r"^frame_\d{4}\.png$")
_SHOW_MISSING = 5


@dataclass(frozen=True)
class SintelSample(StereoSample):
    """A Sintel pair: the :class:`StereoSample` paths plus the occlusion and out-of-frame masks of the left view.

    Attributes:
        occlusion: ``occlusions/<scene>/frame_NNNN.png`` (255 = occluded in the right view), or ``None``.
        outofframe: ``outofframe/<scene>/frame_NNNN.png`` (255 = leaves the right image), or ``None``.
    """

    occlusion: Path | None = None
    outofframe: Path | None = None


def read_sintel_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a Sintel occlusion / out-of-frame mask: 8-bit PNG, 255 = marked, 0 = not.

    Args:
        path: The mask file.

    Returns:
        bool ``(H, W)``, True where the stored value is 128 or more.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: Not a decodable 8-bit PNG with one channel (or three equal ones).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Sintel mask {p} does not exist")
    image = cv2.imread(os.fspath(p), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FormatError(p, "could not be decoded; expected an 8-bit grey PNG mask (255 = marked, 0 = not)")
    if image.ndim == 3 and image.shape[2] in (3, 4) and (image[..., :1] == image[..., 1:3]).all():
        image = image[..., 0]
    if image.dtype != np.uint8 or image.ndim != 2:
        raise FormatError(
            p, f"decoded to {image.dtype} {image.shape}; expected an 8-bit grey PNG mask (255 = marked, 0 = not)"
        )
    return image >= 128


def sintel_sample_name(left: str) -> str:
    """Output name for a Sintel left-image path: ``.../clean_left/alley_1/frame_0001.png`` -> ``alley_1/frame_0001``.

    The part after the ``<pass>_left`` folder is kept, so clean and final predictions of one frame share a name;
    paths of another shape keep their relative stem.
    """
    parts = PurePosixPath(left.replace("\\", "/")).with_suffix("").parts
    folders = {f"{p}_left" for p in SINTEL_PASSES}
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in folders and i + 1 < len(parts):
            return "/".join(parts[i + 1 :])
    return default_sample_name(left)


def _with_masks(sample: StereoSample, source: Path) -> SintelSample:
    """Attach the mask paths to a list-file sample (``disparities`` folder -> ``occlusions``/``outofframe``)."""
    if sample.disparity is None:
        raise ValueError(f"{source}: Sintel list entries need a disparity path (3 fields), got {sample.left} alone")
    parts = sample.disparity.parts
    if "disparities" not in parts:
        raise ValueError(
            f"{source}: disparity path {sample.disparity} has no 'disparities' folder, so its occlusion and "
            "out-of-frame masks cannot be located (expected .../disparities/<scene>/frame_NNNN.png)"
        )
    i = len(parts) - 1 - parts[::-1].index("disparities")

    def swap(folder: str) -> Path:
        return Path(*parts[:i], folder, *parts[i + 1 :])

    return SintelSample(
        sample.left,
        sample.right,
        sample.disparity,
        sample.name,
        occlusion=swap("occlusions"),
        outofframe=swap("outofframe"),
    )


class SintelStereoDataset(StereoDataset):
    """:class:`StereoDataset` that also removes out-of-frame (and optionally occluded) pixels from ``valid``.

    Args:
        samples: :class:`SintelSample` items (plain :class:`StereoSample` items get no mask).
        transform: See :class:`StereoDataset`.
        max_disp: See :class:`StereoDataset`.
        seed: See :class:`StereoDataset`.
        include_occluded: Keep occluded pixels as ground truth (out-of-frame pixels are always removed).
    """

    def __init__(
        self,
        samples: Sequence[StereoSample],
        transform: Transform | None = None,
        max_disp: float | None = None,
        seed: int = 0,
        include_occluded: bool = True,
    ) -> None:
        super().__init__(samples, transform=transform, max_disp=max_disp, seed=seed)
        self.include_occluded = include_occluded

    @override
    def load(self, index: int) -> dict[str, Any]:
        item = super().load(index)
        sample = self.samples[index]
        if "valid" not in item or not isinstance(sample, SintelSample):
            return item
        valid = item["valid"][0].numpy()
        masks = [sample.outofframe] + ([] if self.include_occluded else [sample.occlusion])
        for path in masks:
            if path is None:
                continue
            mask = read_sintel_mask(path)
            if mask.shape != valid.shape:
                raise ValueError(
                    f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the disparity {sample.disparity} "
                    f"is {valid.shape[1]}x{valid.shape[0]}; expected equal sizes"
                )
            valid = valid & ~mask
        item["valid"] = torch.from_numpy(np.ascontiguousarray(valid))[None]
        item["disparity"] = item["disparity"] * item["valid"]
        return item


class SintelStereoDataModule(StereoDataModule):
    """MPI Sintel stereo pairs (clean or final pass) with RGB-PNG disparity and occlusion masks.

    Args:
        root: Folder holding ``training/``; ``None`` generates a synthetic Sintel tree.
        batch_size: Training batch size (per process).
        eval_batch_size: Validation/test/predict batch size (all Sintel images are 436 x 1024).
        num_workers: DataLoader worker processes.
        crop_size: ``(height, width)`` of the training crop (IRS's Sintel loader: 384 x 768).
        max_disp: Ground truth at or above this disparity is invalid; ``None`` for no limit.
        augment: FADNet's colour augmentation on training pairs.
        synthetic_dir: Where ``root=None`` writes the synthetic tree (default: a cache folder).
        synthetic_options: Overrides for :func:`~lightning_hpml.datamodules.synthetic.write_sintel_stereo`.
        seed: Seed of shuffle, augmentation and synthetic data.
        render_pass: ``"clean"`` or ``"final"`` images (ignored for splits given by list files).
        include_occluded: Count occluded pixels as ground truth (Sintel's "all" error, the default) or not
            ("noc"); out-of-frame pixels never count.
        split: ``"scenes"`` (train/val by scene) or ``"all"`` (every pair in both).
        val_scenes: Scenes to validate on with ``split="scenes"``, replacing :data:`SINTEL_VAL_SCENES`.
        train_list: FADNet list file for the training split (path, or relative to ``root``).
        val_list: FADNet list file for val/test/predict (e.g. FADNet's ``Sintel_ALL.list``).

    Raises:
        ValueError: Unknown ``render_pass``/``split`` or malformed ``val_scenes``.
    """

    disparity_format: ClassVar[Literal["pfm", "kitti_png"]] = "pfm"
    dataset_name: ClassVar[str] = "sintel"
    expected_layout: ClassVar[str] = (
        "<root>/training/{clean_left,clean_right,final_left,final_right,disparities,occlusions,outofframe}/"
        "<scene>/frame_NNNN.png"
    )

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
        render_pass: Literal["clean", "final"] = "clean",
        include_occluded: bool = True,
        split: Literal["scenes", "all"] = "scenes",
        val_scenes: list[str] | None = None,
        train_list: str | None = None,
        val_list: str | None = None,
    ) -> None:
        if render_pass not in SINTEL_PASSES:
            raise ValueError(f"`render_pass` must be one of {SINTEL_PASSES}, got {render_pass!r}")
        if split not in ("scenes", "all"):
            raise ValueError(f"`split` must be 'scenes' or 'all', got {split!r}")
        if not isinstance(include_occluded, bool):
            raise TypeError(f"`include_occluded` must be True or False, got {include_occluded!r}")
        if val_scenes is not None:
            val_scenes = [val_scenes] if isinstance(val_scenes, str) else list(val_scenes)
            bad = [s for s in val_scenes if not isinstance(s, str) or not s]
            if bad or not val_scenes or len(set(val_scenes)) != len(val_scenes):
                raise ValueError(f"`val_scenes` must be a non-empty list of distinct scene names, got {val_scenes!r}")
        super().__init__(
            root=root,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            crop_size=crop_size,
            max_disp=max_disp,
            augment=augment,
            synthetic_dir=synthetic_dir,
            synthetic_options=synthetic_options,
            seed=seed,
        )
        self.render_pass = render_pass
        self.include_occluded = include_occluded
        self.split = split
        self.val_scenes = val_scenes
        self.train_list = train_list
        self.val_list = val_list

    # -------------------------------------------------------------------------------------------------- parsing
    @override
    def parse(self, split: Split) -> list[StereoSample]:
        if split not in ("train", "val", "test", "predict"):
            raise ValueError(f"`split` must be 'train', 'val', 'test' or 'predict', got {split!r}")
        given = self.train_list if split == "train" else self.val_list
        if given is not None:
            path = self._list_path(given)
            return [_with_masks(s, path) for s in read_list_file(path, self.data_root, sintel_sample_name)]
        scenes = self._scenes()
        if self.split == "all":
            chosen = scenes
        else:
            val = self._val_scenes(scenes)
            chosen = val if split != "train" else [s for s in scenes if s not in set(val)]
        if not chosen:
            raise ValueError(f"the Sintel {split} split is empty (scenes found: {scenes})")
        return [sample for scene in chosen for sample in self._scan(scene)]

    def _list_path(self, given: str) -> Path:
        path = Path(given).expanduser()
        if path.is_file():
            return path
        in_root = self.data_root / given
        if not path.is_absolute() and in_root.is_file():
            return in_root
        raise FileNotFoundError(f"list file {given!r} not found: looked for {path.absolute()} and {in_root}")

    def _scenes(self) -> list[str]:
        root = self.data_root
        left_dir = root / "training" / f"{self.render_pass}_left"
        if not left_dir.is_dir():
            raise FileNotFoundError(
                f"Sintel folder {left_dir} not found (root {root}{' does not exist' if not root.is_dir() else ''}, "
                f"render_pass={self.render_pass!r}); expected layout: {self.expected_layout}"
            )
        scenes = sorted(p.name for p in left_dir.iterdir() if p.is_dir())
        if not scenes:
            raise FileNotFoundError(f"no scene folders in {left_dir}; expected layout: {self.expected_layout}")
        return scenes

    def _val_scenes(self, scenes: list[str]) -> list[str]:
        wanted = list(self.val_scenes) if self.val_scenes is not None else list(SINTEL_VAL_SCENES)
        source = "`val_scenes`" if self.val_scenes is not None else "the default Sintel val scenes"
        absent = [s for s in wanted if s not in scenes]
        if absent:
            raise ValueError(
                f"{source} {absent} are not among the {len(scenes)} scenes under "
                f"{self.data_root / 'training' / f'{self.render_pass}_left'} ({scenes}); pass `val_scenes`"
            )
        return sorted(wanted)

    def _scan(self, scene: str) -> list[SintelSample]:
        training = self.data_root / "training"
        left_dir = training / f"{self.render_pass}_left" / scene
        frames = sorted(p.name for p in left_dir.iterdir() if _FRAME.match(p.name))
        if not frames:
            raise FileNotFoundError(f"no frame_NNNN.png images in {left_dir}; expected layout: {self.expected_layout}")
        right_dir = training / f"{self.render_pass}_right" / scene
        return [
            SintelSample(
                left=left_dir / frame,
                right=right_dir / frame,
                disparity=training / "disparities" / scene / frame,
                name=f"{scene}/{frame[: -len('.png')]}",
                occlusion=training / "occlusions" / scene / frame,
                outofframe=training / "outofframe" / scene / frame,
            )
            for frame in frames
        ]

    # ------------------------------------------------------------------------------------------------- datasets
    @override
    def build_dataset(self, split: Split) -> StereoDataset:
        """Parse ``split``, check images, disparities and the masks in use exist, wrap in a Sintel dataset."""
        samples = self.parse(split)
        check_samples_exist(samples, self.expected_layout, where=self.data_root)
        self._check_masks_exist(samples)
        transform = None
        if split == "train":
            transform = StereoTrainTransform(self.crop_size, self.min_top_fraction, color=self.augment)
        return SintelStereoDataset(
            samples, transform=transform, max_disp=self.max_disp, seed=self.seed, include_occluded=self.include_occluded
        )

    def _check_masks_exist(self, samples: list[StereoSample]) -> None:
        missing: list[Path] = []
        for sample in samples:
            if not isinstance(sample, SintelSample):
                continue
            needed = [sample.outofframe] + ([] if self.include_occluded else [sample.occlusion])
            missing += [p for p in needed if p is not None and not p.is_file()]
        if missing:
            shown = "\n  ".join(str(p) for p in missing[:_SHOW_MISSING])
            more = f"\n  ... and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
            raise FileNotFoundError(
                f"{len(missing)} Sintel mask files are missing under {self.data_root}:\n  {shown}{more}\n"
                f"expected layout: {self.expected_layout}"
            )

    # ------------------------------------------------------------------------------------------------ synthetic
    @override
    def synthetic_defaults(self) -> dict[str, Any]:
        height, width = synthetic_image_size(self.crop_size)
        return {"scenes": list(SINTEL_SCENES), "height": height, "width": width, "seed": self.seed}

    @override
    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_sintel_stereo(root, **options)
