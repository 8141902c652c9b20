"""DTU in the MVSNet-preprocessed training layout (``mvs_training/dtu`` + ``Depths_raw``) as multi-view batches.

Layout read (see the reference notes, section 2): ``Cameras/pair.txt``; ``Cameras/train/{view:08d}_cam.txt`` (shared
by all scans, intrinsics at 1/4 of the 640x512 rectified images, so they are multiplied by 4 as MVSNet_pytorch does);
``Rectified/scan{N}_train/rect_{view+1:03d}_{light}_r5000.png`` (1-based file index, light 0..6);
``Depths_raw/scan{N}/depth_map_{view:04d}.pfm``: either at the image resolution, or DTU's full 1200x1600, which is
brought to 512x640 as MVSNet_pytorch does (nearest downsampling by 2, then a centred crop).

A sample is (scan, light, reference view): the reference plus its ``num_views - 1`` best source views from
``pair.txt``. Training uses all 7 lights, validation and test light 3 (all lights on). Splits: the 79/18/22 scan lists
of MVSNet_pytorch (``lists/dtu/*.txt``). Batch keys: ``images`` (B, V, 3, H, W) in [0, 1] (view 0 = reference),
``intrinsics`` (B, V, 3, 3) for that image size, ``extrinsics`` (B, V, 4, 4) world-to-camera, ``depth`` (B, 1, H, W)
reference z-depth in mm (0 where missing), ``valid`` (B, 1, H, W), ``depth_range`` (B, 2) from the reference camera
file (MVSNet's 192 x 1.06 x interval), ``scan`` (list of str), ``view_ids`` (B, V).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_hpml.datamodules.formats.image import read_rgb
from lightning_hpml.datamodules.formats.mvs_cameras import read_cam_txt, read_pair_txt, scale_intrinsics
from lightning_hpml.datamodules.formats.pfm import read_pfm
from lightning_hpml.datamodules.synthetic.cached_tree import SyntheticTreeMixin
from lightning_hpml.datamodules.synthetic.dtu_writer import DTU_LIGHTS, write_synthetic_dtu

__all__ = ["DTU_TEST_SCANS", "DTU_TRAIN_SCANS", "DTU_VAL_SCANS", "DTUDataModule", "DTUViews"]

# xy-guo/MVSNet_pytorch lists/dtu/{train,val,test}.txt
DTU_TRAIN_SCANS = (
    2,
    6,
    7,
    8,
    14,
    16,
    18,
    19,
    20,
    22,
    30,
    31,
    36,
    39,
    41,
    42,
    44,
    45,
    46,
    47,
    50,
    51,
    52,
    53,
    55,
    57,
    58,
    60,
    61,
    63,
    64,
    65,
    68,
    69,
    70,
    71,
    72,
    74,
    76,
    83,
    84,
    85,
    87,
    88,
    89,
    90,
    91,
    92,
    93,
    94,
    95,
    96,
    97,
    98,
    99,
    100,
    101,
    102,
    103,
    104,
    105,
    107,
    108,
    109,
    111,
    112,
    113,
    115,
    116,
    119,
    120,
    121,
    122,
    123,
    124,
    125,
    126,
    127,
    128,
)
DTU_VAL_SCANS = (3, 5, 17, 21, 28, 35, 37, 38, 40, 43, 56, 59, 66, 67, 82, 86, 106, 117)
DTU_TEST_SCANS = (1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118)
_EVAL_LIGHT = 3


def _depth_to_image_grid(depth: np.ndarray, image_shape: tuple[int, int], path: Path) -> np.ndarray:
    if depth.shape == image_shape:
        return depth
    if depth.shape == (1200, 1600) and image_shape == (512, 640):
        half = depth[::2, ::2]  # nearest downsampling to 600 x 800
        return half[44 : 44 + 512, 80 : 80 + 640]
    raise ValueError(f"{path}: depth map is {depth.shape}, expected the image size {image_shape} or 1200x1600")


class DTUViews(Dataset):
    def __init__(
        self,
        root: Path,
        scans: tuple[int, ...],
        lights: tuple[int, ...],
        num_views: int,
        cams_folder: str = "Cameras/train",
        source_pool: int | None = None,
    ) -> None:
        self.root = root
        self.source_pool = source_pool
        self.num_views = num_views
        self.cams_folder = cams_folder
        self.second_field = "max" if cams_folder.startswith("Cameras_1") else "interval"
        self.pairs = read_pair_txt(root / "Cameras" / "pair.txt")
        self.samples = [(scan, light, ref) for scan in scans for light in lights for ref in self.pairs]
        missing = [s for s in scans if not (root / "Rectified" / f"scan{s}_train").is_dir()]
        if missing:
            raise FileNotFoundError(f"DTU root {root}: no Rectified/scan<N>_train for scans {missing[:5]}")
        for ref, sources in self.pairs.items():
            if len(sources) < num_views - 1:
                raise ValueError(
                    f"{root / 'Cameras' / 'pair.txt'}: view {ref} has {len(sources)} source views, "
                    f"fewer than num_views - 1 = {num_views - 1}"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        scan, light, ref = self.samples[index]
        candidates = [v for v, _ in self.pairs[ref]]
        if self.source_pool is None:
            sources = candidates[: self.num_views - 1]
        else:  # DispMVS's --views_aug: a random subset of the best `source_pool` neighbours
            pool = candidates[: max(self.source_pool, self.num_views - 1)]
            sources = [pool[i] for i in torch.randperm(len(pool))[: self.num_views - 1].tolist()]
        views = [ref, *sources]
        images, intrinsics, extrinsics = [], [], []
        for view in views:
            image = read_rgb(self.root / "Rectified" / f"scan{scan}_train" / f"rect_{view + 1:03d}_{light}_r5000.png")
            camera = read_cam_txt(self.root / self.cams_folder / f"{view:08d}_cam.txt", self.second_field)
            images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
            intrinsics.append(torch.from_numpy(scale_intrinsics(camera.intrinsic, 4.0, 4.0)))
            extrinsics.append(torch.from_numpy(camera.extrinsic))
            if view == ref:
                depth_range = camera.depth_range()
        depth_path = self.root / "Depths_raw" / f"scan{scan}" / f"depth_map_{ref:04d}.pfm"
        depth = _depth_to_image_grid(read_pfm(depth_path), tuple(images[0].shape[1:]), depth_path)
        depth = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]
        valid = torch.isfinite(depth) & (depth > 0)
        return {
            "images": torch.stack(images),
            "intrinsics": torch.stack(intrinsics).float(),
            "extrinsics": torch.stack(extrinsics).float(),
            "depth": torch.where(valid, depth, torch.zeros_like(depth)),
            "valid": valid,
            "depth_range": torch.tensor(depth_range, dtype=torch.float32),
            "scan": f"scan{scan}",
            "view_ids": torch.tensor(views),
        }


class DTUDataModule(SyntheticTreeMixin, L.LightningDataModule):
    """Args:
    root: ``mvs_training/dtu`` with ``Depths_raw`` inside (``None``: a synthetic tree in the same layout).
    num_views: Reference plus source views per sample.
    train_scans, val_scans, test_scans: Override the MVSNet_pytorch splits (scan numbers).
    batch_size, num_workers: DataLoader settings.
    cams_folder: Camera folder under ``root``: ``"Cameras/train"`` (MVSNet: second depth field = interval) or
        IterMVS's ``"Cameras_1"`` (second field = max depth, used by DispMVS); intrinsics at 1/4 scale in both.
    source_pool: For training, draw the source views at random from the best ``source_pool`` views of ``pair.txt``
        (DispMVS trains with 4 of the best 10); ``None``: always the best ``num_views - 1``. Evaluation always uses
        the best.
    synthetic_scans, synthetic_views, synthetic_size, synthetic_seed: The synthetic tree (train on all but the last
        two scans, validate on the second to last, test on the last).
    synthetic_dir: Where ``root=None`` writes its tree (default: a per-options cache folder).
    """

    synthetic_folder = "dtu"

    def __init__(
        self,
        root: str | None = None,
        num_views: int = 5,
        train_scans: tuple[int, ...] | None = None,
        val_scans: tuple[int, ...] | None = None,
        test_scans: tuple[int, ...] | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        cams_folder: str = "Cameras/train",
        source_pool: int | None = None,
        synthetic_scans: tuple[int, ...] = (1, 2, 3, 4),
        synthetic_views: int = 5,
        synthetic_size: tuple[int, int] = (64, 80),
        synthetic_seed: int = 0,
        synthetic_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.synthetic_dir = synthetic_dir
        self.num_views = num_views
        self.batch_size = batch_size
        self.num_workers = num_workers
        if cams_folder not in ("Cameras/train", "Cameras", "Cameras_1"):
            raise ValueError(f"`cams_folder` must be 'Cameras/train', 'Cameras' or 'Cameras_1', got {cams_folder!r}")
        self.cams_folder = cams_folder
        if source_pool is not None and source_pool < num_views - 1:
            raise ValueError(f"`source_pool` ({source_pool}) must be at least num_views - 1 = {num_views - 1}")
        self.source_pool = source_pool
        self.synthetic = {
            "scans": tuple(synthetic_scans),
            "num_views": synthetic_views,
            "height": synthetic_size[0],
            "width": synthetic_size[1],
            "seed": synthetic_seed,
        }
        if root is None:
            defaults = (self.synthetic["scans"][:-2], self.synthetic["scans"][-2:-1], self.synthetic["scans"][-1:])
        else:
            defaults = (DTU_TRAIN_SCANS, DTU_VAL_SCANS, DTU_TEST_SCANS)
        self.scans = {
            "train": tuple(train_scans or defaults[0]),
            "val": tuple(val_scans or defaults[1]),
            "test": tuple(test_scans or defaults[2]),
        }

    def resolved_synthetic_options(self) -> dict:
        return dict(self.synthetic)

    def write_synthetic_tree(self, folder: Path) -> None:
        write_synthetic_dtu(folder, **self.synthetic)

    def setup(self, stage: str) -> None:
        root = self.data_root
        if not (root / "Cameras" / "pair.txt").is_file():
            raise FileNotFoundError(
                f"DTU root {root}: Cameras/pair.txt not found (expected the mvs_training/dtu layout)"
            )
        all_lights = tuple(range(DTU_LIGHTS))
        self.datasets = {
            split: DTUViews(
                root,
                scans,
                all_lights if split == "train" else (_EVAL_LIGHT,),
                self.num_views,
                self.cams_folder,
                self.source_pool if split == "train" else None,
            )
            for split, scans in self.scans.items()
        }

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["train"], self.batch_size, shuffle=True, num_workers=self.num_workers, drop_last=True
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], batch_size=self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=self.batch_size, num_workers=self.num_workers)
