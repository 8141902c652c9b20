"""Multi-view "project" folders for prediction: DTU's evaluation set and Tanks and Temples (same format).

Layout per scene (MVSNet's test format)::

    <scene>/images/{view:08d}.jpg     full-resolution images (DTU: 1600x1200; Tanks and Temples: 1920x1080)
    <scene>/cams/{view:08d}_cam.txt   (or cams_1/: second depth field = max depth)
    <scene>/pair.txt

Images are resized to ``image_size`` with the intrinsics scaled to match (DispMVS uses 1600x1152 for DTU and
1920x1024 for Tanks and Temples); a reference view whose best source score is <= ``min_score`` is skipped, as
DispMVS's Tanks-and-Temples loader does. Batch keys as :mod:`~lightning_hpml.datamodules.mvs.dtu` minus the ground
truth (``depth``/``valid``): ``images``, ``intrinsics``, ``extrinsics``, ``depth_range``, ``scan``, ``view_ids``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lightning_hpml.datamodules.formats.image import read_rgb
from lightning_hpml.datamodules.formats.mvs_cameras import read_cam_txt, read_pair_txt, scale_intrinsics

__all__ = ["MVSProjectDataModule", "MVSProjectViews"]


class MVSProjectViews(Dataset):
    def __init__(
        self,
        root: Path,
        scenes: tuple[str, ...],
        num_views: int,
        image_size: tuple[int, int] | None,
        cams_folder: str = "cams",
        min_score: float | None = None,
    ) -> None:
        self.root, self.num_views, self.image_size, self.cams_folder = root, num_views, image_size, cams_folder
        self.second_field = "max" if cams_folder == "cams_1" else "interval"
        self.samples = []
        for scene in scenes:
            pair_file = root / scene / "pair.txt"
            if not pair_file.is_file():
                raise FileNotFoundError(
                    f"{pair_file} not found (expected <scene>/images, <scene>/{cams_folder}, <scene>/pair.txt)"
                )
            for ref, sources in read_pair_txt(pair_file).items():
                if min_score is not None and (not sources or sources[0][1] <= min_score):
                    continue
                if len(sources) < num_views - 1:
                    raise ValueError(f"{pair_file}: view {ref} has {len(sources)} source views, need {num_views - 1}")
                self.samples.append((scene, [ref] + [v for v, _ in sources[: num_views - 1]]))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        scene, views = self.samples[index]
        images, intrinsics, extrinsics = [], [], []
        for view in views:
            image = torch.from_numpy(read_rgb(self.root / scene / "images" / f"{view:08d}.jpg")).permute(2, 0, 1)
            image = image.float() / 255.0
            camera = read_cam_txt(self.root / scene / self.cams_folder / f"{view:08d}_cam.txt", self.second_field)
            k = camera.intrinsic
            if self.image_size is not None and tuple(image.shape[1:]) != tuple(self.image_size):
                sy, sx = self.image_size[0] / image.shape[1], self.image_size[1] / image.shape[2]
                image = F.interpolate(
                    image[None], size=self.image_size, mode="bilinear", align_corners=False, antialias=True
                )[0]
                k = scale_intrinsics(k, sx, sy)
            images.append(image)
            intrinsics.append(torch.from_numpy(k).float())
            extrinsics.append(torch.from_numpy(camera.extrinsic).float())
            if view == views[0]:
                depth_range = camera.depth_range()
        return {
            "images": torch.stack(images),
            "intrinsics": torch.stack(intrinsics),
            "extrinsics": torch.stack(extrinsics),
            "depth_range": torch.tensor(depth_range, dtype=torch.float32),
            "scan": scene,
            "view_ids": torch.tensor(views),
        }


class MVSProjectDataModule(L.LightningDataModule):
    """Args:
    root: Folder holding the scene folders.
    scenes: Scene folder names (e.g. ``scan1``... for DTU, ``Family``... for Tanks and Temples).
    num_views: Reference plus source views (DispMVS: 5 on DTU, 7 on Tanks and Temples).
    image_size: Resize to ``(H, W)`` (``None``: as stored).
    cams_folder: ``"cams"`` (DTU: second depth field = interval) or ``"cams_1"`` (second field = max depth).
    min_score: Skip reference views whose best pair score is not above this (Tanks and Temples: 1.0).
    """

    def __init__(
        self,
        root: str,
        scenes: tuple[str, ...],
        num_views: int = 5,
        image_size: tuple[int, int] | None = None,
        cams_folder: str = "cams",
        min_score: float | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if cams_folder not in ("cams", "cams_1"):
            raise ValueError(f"`cams_folder` must be 'cams' or 'cams_1', got {cams_folder!r}")
        self.root, self.scenes, self.num_views = Path(root).expanduser(), tuple(scenes), num_views
        self.image_size = tuple(image_size) if image_size is not None else None
        self.cams_folder, self.min_score = cams_folder, min_score
        self.batch_size, self.num_workers = batch_size, num_workers

    def setup(self, stage: str) -> None:
        self.predict_set = MVSProjectViews(
            self.root, self.scenes, self.num_views, self.image_size, self.cams_folder, self.min_score
        )

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.predict_set, batch_size=self.batch_size, num_workers=self.num_workers)
