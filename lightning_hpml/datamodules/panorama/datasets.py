"""Stanford2D3D, Matterport3D and 3D60 panorama depth DataModules (layouts and depth encodings).

- Stanford2D3D (Armeni et al. 2017), ``area_N/pano/rgb/<stem>_rgb.png`` + ``area_N/pano/depth/<stem>_depth.png``
  (uint16, metres = value / 512, 65535 = none). Split by area as in fold 1 of the panorama depth papers: train on
  areas 1, 2, 3, 4, 6, test on area 5 (``area_5a``, ``area_5b``); there is no official validation split, so
  validation uses the test areas unless ``val_areas`` says otherwise.
- Matterport3D (Chang et al. 2017) stitched to equirectangular by UniFuse's scripts: ``<house>/pano_skybox_color/
  <id>.jpg`` + ``<house>/pano_depth/<id>.png`` (uint16, metres = value / 4000, 0 = none); houses per split from the
  official ``scenes_{train,val,test}.txt`` (one house id per line) in ``root`` or given as ``scene_lists``.
- 3D60 (Zioulis et al. 2018/2019): ``*_color_0_Left_Down_0.0.png`` + ``*_depth_0_Left_Down_0.0.exr`` (float metres),
  256 x 512; pairs from UniFuse-style list files (``<rgb> <depth>`` per line, relative to ``root``), by default
  ``3d60_{train,val,test}.txt`` in ``root``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_hpml.datamodules.formats.panorama_depth import (
    MATTERPORT3D_DEPTH_SCALE,
    STANFORD2D3D_DEPTH_SCALE,
    read_depth_exr,
    read_depth_png,
)
from lightning_hpml.datamodules.panorama.base import PanoramaDataModule, require_samples

__all__ = ["D3D60DataModule", "Matterport3DDataModule", "Stanford2D3DDataModule"]


class Stanford2D3DDataModule(PanoramaDataModule):
    layout = "stanford2d3d"

    def __init__(
        self,
        *args,
        train_areas: tuple[str, ...] = ("area_1", "area_2", "area_3", "area_4", "area_6"),
        val_areas: tuple[str, ...] = ("area_5a", "area_5b"),
        test_areas: tuple[str, ...] = ("area_5a", "area_5b"),
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.areas = {"train": tuple(train_areas), "val": tuple(val_areas), "test": tuple(test_areas)}

    def samples(self, root: Path, split: str) -> list[tuple[Path, Path]]:
        pairs = []
        for area in self.areas[split]:
            for rgb in sorted((root / area / "pano" / "rgb").glob("*_rgb.png")):
                depth = rgb.parent.parent / "depth" / rgb.name.replace("_rgb.png", "_depth.png")
                pairs.append((rgb, depth))
        return require_samples(pairs, f"{root}/{{{','.join(self.areas[split])}}}/pano/rgb/*_rgb.png")

    def read_depth(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_depth_png(path, STANFORD2D3D_DEPTH_SCALE, invalid_value=65535)


class Matterport3DDataModule(PanoramaDataModule):
    layout = "matterport3d"

    def __init__(self, *args, scene_lists: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scene_lists = scene_lists or {}

    def samples(self, root: Path, split: str) -> list[tuple[Path, Path]]:
        list_file = Path(self.scene_lists.get(split, root / f"scenes_{split}.txt"))
        if not list_file.is_file():
            raise FileNotFoundError(f"Matterport3D split file not found: {list_file} (one house id per line)")
        houses = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        pairs = []
        for house in houses:
            for rgb in sorted((root / house / "pano_skybox_color").glob("*.jpg")):
                pairs.append((rgb, root / house / "pano_depth" / f"{rgb.stem}.png"))
        return require_samples(pairs, f"{root}/<house>/pano_skybox_color/*.jpg for the houses in {list_file}")

    def read_depth(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_depth_png(path, MATTERPORT3D_DEPTH_SCALE, invalid_value=0)


class D3D60DataModule(PanoramaDataModule):
    layout = "3d60"

    def __init__(self, *args, list_files: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.list_files = list_files or {}

    def samples(self, root: Path, split: str) -> list[tuple[Path, Path]]:
        list_file = Path(self.list_files.get(split, root / f"3d60_{split}.txt"))
        if not list_file.is_file():
            raise FileNotFoundError(f"3D60 list file not found: {list_file} ('<rgb> <depth>' per line)")
        pairs = []
        for number, line in enumerate(list_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{list_file}:{number}: expected '<rgb path> <depth path>', got {line!r}")
            pairs.append((root / fields[0], root / fields[1]))
        return require_samples(pairs, f"the files listed in {list_file}")

    def read_depth(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_depth_exr(path)
