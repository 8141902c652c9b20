"""Scene Flow (FlyingThings3D, Monkaa, Driving) stereo DataModule, reading the dataset as distributed.

Dataset: Mayer et al., "A Large Dataset to Train Convolutional Networks for Disparity, Optical Flow, and Scene
Flow Estimation", CVPR 2016. Layout under ``root`` (one folder per subset; FADNet's names
``FlyingThings3D_release``, ``monkaa_release``, ``driving_release`` are accepted too)::

    FlyingThings3D/frames_{cleanpass,finalpass}/{TRAIN,TEST}/{A,B,C}/<seq>/{left,right}/<frame>.png
    FlyingThings3D/disparity/{TRAIN,TEST}/{A,B,C}/<seq>/{left,right}/<frame>.pfm
    Monkaa/frames_cleanpass/<scene>/{left,right}/NNNN.png            (+ disparity/<scene>/left/NNNN.pfm)
    Driving/frames_cleanpass/{15mm,35mm}_focallength/scene_{forwards,backwards}/{fast,slow}/{left,right}/NNNN.png

Split (the official one, used by FADNet): train = FlyingThings3D ``TRAIN`` + Monkaa + Driving; val = test =
predict = FlyingThings3D ``TEST``. FADNet-style list files (``train_list``/``val_list``: ``left right disp`` per
line, relative to ``root``) replace directory scanning for their split. FADNet does not drop the FT3D frames
listed in ``all_unused_files.txt``, and neither does the scan here. Left-view disparities are positive PFM.

Predictions are written as PFM (``disparity_format = "pfm"``) under the sample name
``<subset>/<path below frames_<pass>>`` without suffix, e.g. ``FlyingThings3D/TEST/A/0000/left/0006``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

from typing_extensions import override

from lightning_hpml.datamodules.stereo.base import Split, StereoDataModule, synthetic_image_size
from lightning_hpml.datamodules.stereo.samples import StereoSample, default_sample_name, read_list_file
from lightning_hpml.datamodules.synthetic import write_sceneflow

__all__ = ["SUBSET_FOLDERS", "SceneFlowDataModule", "sceneflow_sample_name"]

SUBSET_FOLDERS: dict[str, tuple[str, ...]] = {
    "FlyingThings3D": ("FlyingThings3D", "FlyingThings3D_release"),
    "Monkaa": ("Monkaa", "monkaa_release"),
    "Driving": ("Driving", "driving_release"),
}
"""Accepted folder names per subset, in lookup order: the official name, then FADNet's."""

_PASSES = ("cleanpass", "finalpass")
_FOLDER_TO_SUBSET = {folder: subset for subset, folders in SUBSET_FOLDERS.items() for folder in folders}


def sceneflow_sample_name(left: str) -> str:
    """Output name for a Scene Flow left-image path relative to the root (as written in list files).

    ``FlyingThings3D_release/frames_cleanpass/TEST/A/0000/left/0006.png`` -> ``FlyingThings3D/TEST/A/0000/left/0006``:
    the subset folder is mapped to its canonical name and the ``frames_<pass>`` folder dropped, so clean- and
    final-pass predictions of one frame share a name. Paths of another shape keep their relative stem.
    """
    parts = PurePosixPath(left.replace("\\", "/")).with_suffix("").parts
    if len(parts) >= 3 and parts[0] in _FOLDER_TO_SUBSET and parts[1] in {f"frames_{p}" for p in _PASSES}:
        return "/".join((_FOLDER_TO_SUBSET[parts[0]], *parts[2:]))
    return default_sample_name(left)


class SceneFlowDataModule(StereoDataModule):
    """Scene Flow stereo pairs with PFM disparity, split as in FADNet (see the module docstring).

    Args:
        root: Folder holding the subset folders; ``None`` generates a small synthetic Scene Flow tree.
        batch_size: Training batch size (per process).
        eval_batch_size: Validation/test/predict batch size.
        num_workers: DataLoader worker processes.
        crop_size: ``(height, width)`` of the training crop (FADNet: 384 x 768).
        max_disp: Ground truth at or above this disparity is invalid (FADNet: 192); ``None`` for no limit.
        augment: FADNet's colour augmentation on training pairs.
        synthetic_dir: Where ``root=None`` writes the synthetic tree (default: a cache folder).
        synthetic_options: Overrides for :func:`~lightning_hpml.datamodules.synthetic.write_sceneflow`.
        seed: Seed of shuffle, augmentation and synthetic data.
        subsets: Subsets scanned for training; FlyingThings3D is also the val/test/predict set.
        render_pass: ``"cleanpass"`` or ``"finalpass"`` images (ignored for splits given by list files).
        train_list: FADNet list file for the training split (path, or relative to ``root``).
        val_list: FADNet list file for val/test/predict.

    Raises:
        ValueError: Unknown subset or render pass.
    """

    disparity_format: ClassVar[Literal["pfm", "kitti_png"]] = "pfm"
    dataset_name: ClassVar[str] = "sceneflow"
    expected_layout: ClassVar[str] = (
        "<root>/<subset>/frames_<pass>/<...>/left/<frame>.png, the right image in the sibling right/ folder, "
        "disparity in <root>/<subset>/disparity/<...>/left/<frame>.pfm (subset: FlyingThings3D, Monkaa, Driving)"
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
        subsets: tuple[str, ...] = ("FlyingThings3D", "Monkaa", "Driving"),
        render_pass: Literal["cleanpass", "finalpass"] = "cleanpass",
        train_list: str | None = None,
        val_list: str | None = None,
    ) -> None:
        subsets = tuple(subsets)
        unknown = [s for s in subsets if s not in SUBSET_FOLDERS]
        if unknown or not subsets:
            raise ValueError(f"`subsets` must be a non-empty selection of {list(SUBSET_FOLDERS)}, got {subsets!r}")
        if render_pass not in _PASSES:
            raise ValueError(f"`render_pass` must be one of {_PASSES}, got {render_pass!r}")
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
        self.subsets = subsets
        self.render_pass = render_pass
        self.train_list = train_list
        self.val_list = val_list

    # -------------------------------------------------------------------------------------------------- parsing
    @override
    def parse(self, split: Split) -> list[StereoSample]:
        root = self.data_root
        if not root.is_dir():
            raise FileNotFoundError(
                f"Scene Flow root {root} does not exist; expected it to hold subset folders "
                f"{self._accepted_folders(self.subsets)}"
            )
        if split == "train":
            if self.train_list is not None:
                return read_list_file(self._list_path(self.train_list), root, sceneflow_sample_name)
            samples: list[StereoSample] = []
            for subset in self.subsets:
                samples += self._scan(subset, "TRAIN" if subset == "FlyingThings3D" else None)
            return samples
        if split in ("val", "test", "predict"):
            if self.val_list is not None:
                return read_list_file(self._list_path(self.val_list), root, sceneflow_sample_name)
            if "FlyingThings3D" not in self.subsets:
                raise ValueError(
                    f"the Scene Flow {split} split is FlyingThings3D TEST, but `subsets`={self.subsets} leaves "
                    "FlyingThings3D out; add it to `subsets` or pass `val_list`"
                )
            return self._scan("FlyingThings3D", "TEST")
        raise ValueError(f"`split` must be 'train', 'val', 'test' or 'predict', got {split!r}")

    def _list_path(self, given: str) -> Path:
        path = Path(given).expanduser()
        if path.is_file():
            return path
        in_root = self.data_root / given
        if not path.is_absolute() and in_root.is_file():
            return in_root
        raise FileNotFoundError(f"list file {given!r} not found: looked for {path.absolute()} and {in_root}")

    @staticmethod
    def _accepted_folders(subsets: tuple[str, ...]) -> str:
        return ", ".join(" or ".join(SUBSET_FOLDERS[s]) for s in subsets)

    def _subset_dir(self, subset: str) -> Path:
        candidates = [self.data_root / name for name in SUBSET_FOLDERS[subset]]
        for folder in candidates:
            if folder.is_dir():
                return folder
        raise FileNotFoundError(
            f"Scene Flow subset {subset!r} not found: looked for {', '.join(str(c) for c in candidates)}; "
            f"expected layout: {self.expected_layout}"
        )

    def _scan(self, subset: str, part: str | None) -> list[StereoSample]:
        """List the pairs of one subset (``part``: FlyingThings3D ``TRAIN``/``TEST`` folder)."""
        base = self._subset_dir(subset)
        frames = base / f"frames_{self.render_pass}"
        disparity = base / "disparity"
        for folder in (frames, disparity):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{folder} does not exist (render_pass={self.render_pass!r}); expected {base} to hold "
                    f"frames_{self.render_pass}/ and disparity/"
                )
        start = frames / part if part else frames
        lefts = sorted(start.glob("**/left/*.png")) if start.is_dir() else []
        if not lefts:
            raise FileNotFoundError(
                f"no left images found under {start}; expected {start}/<...>/left/<frame>.png ({self.expected_layout})"
            )
        samples = []
        for left in lefts:
            rel = left.relative_to(frames)
            samples.append(
                StereoSample(
                    left=left,
                    right=frames / rel.parent.parent / "right" / rel.name,
                    disparity=disparity / rel.with_suffix(".pfm"),
                    name=f"{subset}/{rel.with_suffix('').as_posix()}",
                )
            )
        return samples

    # ------------------------------------------------------------------------------------------------ synthetic
    @override
    def synthetic_defaults(self) -> dict[str, Any]:
        height, width = synthetic_image_size(self.crop_size)
        return {
            "subsets": self.subsets,
            "passes": (self.render_pass,),
            "height": height,
            "width": width,
            "seed": self.seed,
        }

    @override
    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_sceneflow(root, **options)
