"""KITTI 2012 / 2015 stereo DataModule, reading the benchmark folders as distributed.

Datasets: Geiger, Lenz and Urtasun, "Are we ready for Autonomous Driving? The KITTI Vision Benchmark Suite",
CVPR 2012 (KITTI 2012); Menze and Geiger, "Object Scene Flow for Autonomous Vehicles", CVPR 2015 (KITTI 2015).
Layout under ``root``::

    KITTI 2015: training/{image_2,image_3,disp_occ_0,disp_noc_0,obj_map}/000000_10.png   (200 pairs)
                testing/{image_2,image_3}/000000_10.png                                  (200 pairs)
    KITTI 2012: training/{colored_0,colored_1,disp_occ,disp_noc}/000000_10.png           (194 pairs)
                testing/{colored_0,colored_1}/000000_10.png                              (195 pairs)

Only the reference frames (``*_10.png``) are stereo pairs; ``*_11.png`` is the next time step. Disparity PNGs are
16-bit, ``d = value / 256``, 0 = no ground truth (sparse, LiDAR-based).

Splits follow FADNet: KITTI 2015 validates on frames 1, 6, 26, 38, 43, 49, 67, 81, 89, 109, 122, 129, 132, 141,
152, 159, 171, 179, 184, 187 and trains on the other 180; KITTI 2012 trains on frames 0-179 and validates on the
remaining 14. ``split="trainval"`` trains on all training frames (and still validates on the val frames, which
then measures fit, not generalisation). The ``test`` stage evaluates the val frames (they have ground truth); the
``predict`` stage runs on ``testing/`` (no ground truth) and names outputs ``disp_0/000000_10`` so the written
folder (16-bit PNG, ``disparity_format = "kitti_png"``) is a benchmark submission.

Training crops are 256 x 512 with the top at or below 25 % of the height (no LiDAR returns in the sky). Real
KITTI images differ slightly in size (375x1242, 370x1224, 376x1241, ...), so evaluation batches need
``eval_batch_size=1`` (the default); a larger one raises a clear error on the first mixed batch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from typing_extensions import override

from lightning_hpml.datamodules.stereo.base import Split, StereoDataModule, synthetic_image_size
from lightning_hpml.datamodules.stereo.samples import StereoSample
from lightning_hpml.datamodules.synthetic import write_kitti_stereo

__all__ = ["FADNET_KITTI2012_NUM_TRAIN", "FADNET_KITTI2015_VAL_INDICES", "KITTI_FOLDERS", "KITTIStereoDataModule"]

FADNET_KITTI2015_VAL_INDICES: tuple[int, ...] = (
    1,
    6,
    26,
    38,
    43,
    49,
    67,
    81,
    89,
    109,
    122,
    129,
    132,
    141,
    152,
    159,
    171,
    179,
    184,
    187,
)
"""KITTI 2015 training frames FADNet holds out for validation."""
FADNET_KITTI2012_NUM_TRAIN = 180
"""FADNet trains on KITTI 2012 frames 0..179 and validates on the rest."""

KITTI_FOLDERS: dict[int, dict[str, str]] = {
    2015: {"left": "image_2", "right": "image_3", "occ": "disp_occ_0", "noc": "disp_noc_0"},
    2012: {"left": "colored_0", "right": "colored_1", "occ": "disp_occ", "noc": "disp_noc"},
}
"""Folder names per year: left/right colour images and the two ground-truth variants."""

_FRAME = re.compile(r"^(\d{6})_10\.png$")


class KITTIStereoDataModule(StereoDataModule):
    """KITTI 2012/2015 stereo pairs with sparse 16-bit PNG disparity, split as in FADNet.

    Args:
        root: Folder holding ``training/`` and ``testing/``; ``None`` generates a synthetic KITTI tree.
        batch_size: Training batch size (per process).
        eval_batch_size: Validation/test/predict batch size; keep 1 for real KITTI (image sizes vary).
        num_workers: DataLoader worker processes.
        crop_size: ``(height, width)`` of the training crop (FADNet fine-tuning: 256 x 512).
        max_disp: Ground truth at or above this disparity is invalid; ``None`` for no limit.
        augment: FADNet's colour augmentation on training pairs.
        synthetic_dir: Where ``root=None`` writes the synthetic tree (default: a cache folder).
        synthetic_options: Overrides for :func:`~lightning_hpml.datamodules.synthetic.write_kitti_stereo`.
        seed: Seed of shuffle, augmentation and synthetic data.
        year: 2012 or 2015 (selects folder names and the default split).
        gt: ``"occ"`` (all pixels with ground truth, incl. occluded) or ``"noc"`` (non-occluded only).
        val_indices: Training frame numbers to validate on, replacing FADNet's choice.
        split: ``"fadnet"`` (train on the frames not in val) or ``"trainval"`` (train on all training frames).

    Raises:
        ValueError: Unknown ``year``/``gt``/``split`` or malformed ``val_indices``.
    """

    disparity_format: ClassVar[Literal["pfm", "kitti_png"]] = "kitti_png"
    dataset_name: ClassVar[str] = "kitti"
    min_top_fraction: ClassVar[float] = 0.25

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 2,
        crop_size: tuple[int, int] = (256, 512),
        max_disp: float | None = 192.0,
        augment: bool = True,
        synthetic_dir: str | None = None,
        synthetic_options: dict | None = None,
        seed: int = 0,
        year: Literal[2012, 2015] = 2015,
        gt: Literal["occ", "noc"] = "occ",
        val_indices: list[int] | None = None,
        split: Literal["fadnet", "trainval"] = "fadnet",
    ) -> None:
        if year not in KITTI_FOLDERS:
            raise ValueError(f"`year` must be 2012 or 2015, got {year!r}")
        if gt not in ("occ", "noc"):
            raise ValueError(f"`gt` must be 'occ' or 'noc', got {gt!r}")
        if split not in ("fadnet", "trainval"):
            raise ValueError(f"`split` must be 'fadnet' or 'trainval', got {split!r}")
        if val_indices is not None:
            val_indices = list(val_indices)
            bad = [i for i in val_indices if not isinstance(i, int) or isinstance(i, bool) or i < 0]
            if bad or not val_indices or len(set(val_indices)) != len(val_indices):
                raise ValueError(
                    "`val_indices` must be a non-empty list of distinct non-negative frame numbers, "
                    f"got {val_indices!r}"
                )
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
        self.year = year
        self.gt = gt
        self.val_indices = val_indices
        self.split = split

    @property
    def expected_layout(self) -> str:  # type: ignore[override]
        """The layout of the configured year, quoted in missing-file errors."""
        f = KITTI_FOLDERS[self.year]
        return (
            f"KITTI {self.year}: <root>/training/{{{f['left']},{f['right']},{f[self.gt]}}}/NNNNNN_10.png and "
            f"<root>/testing/{{{f['left']},{f['right']}}}/NNNNNN_10.png"
        )

    # -------------------------------------------------------------------------------------------------- parsing
    @override
    def parse(self, split: Split) -> list[StereoSample]:
        if split not in ("train", "val", "test", "predict"):
            raise ValueError(f"`split` must be 'train', 'val', 'test' or 'predict', got {split!r}")
        folders = KITTI_FOLDERS[self.year]
        if split == "predict":
            return [StereoSample(left, right, None, name) for left, right, name in self._pairs("testing", folders)]
        disparity_dir = self.data_root / "training" / folders[self.gt]
        pairs = self._pairs("training", folders)
        samples = {
            _frame_number(left): StereoSample(left, right, disparity_dir / left.name, name)
            for left, right, name in pairs
        }
        val = self._val_frames(sorted(samples))
        if split in ("val", "test"):
            chosen = val
        elif self.split == "trainval":
            chosen = sorted(samples)
        else:
            held_out = set(val)
            chosen = [i for i in sorted(samples) if i not in held_out]
        if not chosen:
            raise ValueError(f"the KITTI {self.year} {split} split is empty ({len(samples)} training frames)")
        return [samples[i] for i in chosen]

    def _pairs(self, part: str, folders: dict[str, str]) -> list[tuple[Path, Path, str]]:
        root = self.data_root
        left_dir = root / part / folders["left"]
        if not left_dir.is_dir():
            other = 2012 if self.year == 2015 else 2015
            hint = ""
            if (root / part / KITTI_FOLDERS[other]["left"]).is_dir():
                hint = f"; {root / part / KITTI_FOLDERS[other]['left']} exists: is this KITTI {other} (year={other})?"
            raise FileNotFoundError(
                f"KITTI {self.year} folder {left_dir} not found (root {root}"
                f"{' does not exist' if not root.is_dir() else ''}); expected layout: {self.expected_layout}{hint}"
            )
        lefts = sorted(p for p in left_dir.iterdir() if _FRAME.match(p.name))
        if not lefts:
            raise FileNotFoundError(f"no NNNNNN_10.png images in {left_dir}; expected layout: {self.expected_layout}")
        right_dir = root / part / folders["right"]
        return [(left, right_dir / left.name, f"disp_0/{left.stem}") for left in lefts]

    def _val_frames(self, frames: list[int]) -> list[int]:
        if self.val_indices is not None:
            wanted, source = sorted(self.val_indices), "`val_indices`"
        elif self.year == 2015:
            wanted, source = list(FADNET_KITTI2015_VAL_INDICES), "FADNet's KITTI 2015 val frames"
        else:
            wanted = [i for i in frames if i >= FADNET_KITTI2012_NUM_TRAIN]
            source = f"FADNet's KITTI 2012 val frames (>= {FADNET_KITTI2012_NUM_TRAIN})"
        available = set(frames)
        absent = [i for i in wanted if i not in available]
        if absent:
            raise ValueError(
                f"{source} {absent} are not among the {len(frames)} training frames under "
                f"{self.data_root / 'training'} (frames {frames[0]}..{frames[-1]}); pass `val_indices`"
            )
        return wanted

    # ------------------------------------------------------------------------------------------------ synthetic
    @override
    def synthetic_defaults(self) -> dict[str, Any]:
        height, width = synthetic_image_size(self.crop_size)
        return {"year": self.year, "height": height, "width": width, "seed": self.seed}

    @override
    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_kitti_stereo(root, **options)


def _frame_number(path: Path) -> int:
    match = _FRAME.match(path.name)
    if match is None:  # _pairs only returns matching names
        raise ValueError(f"{path}: not a KITTI reference frame name NNNNNN_10.png")
    return int(match.group(1))
