"""Nerfbusters scenes (nerfstudio layout) or plain image sequences, for camera-free NeRF (CF-NeRF).

Read from ``<root>/<scene>/``, in this order of preference:

* ``transforms.json`` + ``images/`` (nerfstudio; how Nerfbusters is distributed): frames in file order; the split
  follows nerfstudio's "filename" mode (basename containing ``train`` -> training, ``eval`` -> evaluation; a frame
  with neither is an error unless ``eval_mode="all"``, which trains on every frame). Its poses (OpenGL, converted to
  OpenCV camera-to-world) and intrinsics are **ground truth for evaluation only**; CF-NeRF never sees them in training.
* ``frame_list`` (a text file of image paths relative to the scene folder, one per line, in sequence order), or
* ``images/`` alone: every image file, sorted by name: no cameras at all (the point of the method).

Images are halved ``pyramid_level`` times, each time smoothed by ``[1, 2, 1] / 4`` and averaged over 2 x 2 blocks
(together ``[1, 3, 3, 1] / 8``, centred between input pixels), and intrinsics with them (pixel centres kept aligned,
so the principal point stays at the image centre CF-NeRF assumes). Difference from CF-NeRF's loader: it uses
``cv2.pyrDown`` (``[1, 4, 6, 4, 1] / 16``), whose output pixel ``i`` is centred on input pixel ``2i``: the image moves
by a quarter pixel per level against a centred principal point (3/8 pixel at level 2, about 1 degree of rotation at
our 24 x 32 test size). The training sequence lives in memory: CF-NeRF samples rays from
every registered image at each step, so its ``train_dataloader`` only paces steps (``{"step": i}`` items) and the
module reads :meth:`NeRFBusterDataModule.train_sequence`. The test loader yields evaluation frames one at a time:
``image`` (1, 3, H, W), ``camera_to_world`` (1, 4, 4) ground truth, ``intrinsic`` (1, 3, 3), ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_hpml.datamodules.formats.image import read_rgb
from lightning_hpml.datamodules.formats.mvs_cameras import downsample_intrinsics
from lightning_hpml.datamodules.formats.nerfstudio import opengl_to_opencv, read_transforms_json
from lightning_hpml.datamodules.synthetic.cached_tree import SyntheticTreeMixin
from lightning_hpml.datamodules.synthetic.nerfbuster_writer import write_synthetic_nerfbuster

__all__ = ["NERFBUSTER_SCENES", "ImageSequence", "NeRFBusterDataModule"]

NERFBUSTER_SCENES = (
    "aloe", "art", "car", "century", "flowers", "garbage", "picnic", "pikachu", "pipe", "plant", "roses", "table"
)  # fmt: skip
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".JPG", ".PNG"}


@dataclass
class ImageSequence:
    """Images (N, 3, H, W) in [0, 1], their names, and ground-truth cameras (OpenCV camera-to-world (N, 4, 4),
    intrinsics (N, 3, 3) at this resolution) when the dataset has them."""

    images: Tensor
    names: list[str]
    camera_to_world: Tensor | None = None
    intrinsics: Tensor | None = None


def _pyramid(image: np.ndarray, level: int) -> np.ndarray:
    for _ in range(level):
        height, width = image.shape[:2]
        smooth = cv2.GaussianBlur(image, (3, 3), 0, borderType=cv2.BORDER_REFLECT_101)  # [1, 2, 1] / 4
        image = cv2.resize(smooth, ((width + 1) // 2, (height + 1) // 2), interpolation=cv2.INTER_AREA)
    return image


class _StepPacer(Dataset):
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict:
        return {"step": index}


class _EvalFrames(Dataset):
    def __init__(self, sequence: ImageSequence) -> None:
        self.sequence = sequence

    def __len__(self) -> int:
        return len(self.sequence.names)

    def __getitem__(self, index: int) -> dict:
        s = self.sequence
        return {
            "image": s.images[index],
            "camera_to_world": s.camera_to_world[index],
            "intrinsic": s.intrinsics[index],
            "name": s.names[index],
            "index": index,
        }


class NeRFBusterDataModule(SyntheticTreeMixin, L.LightningDataModule):
    """Args:
    root: Folder holding scene folders (``None``: a synthetic scene in the nerfstudio layout).
    scene: Scene folder name (Nerfbusters: one of :data:`NERFBUSTER_SCENES`).
    pyramid_level: Times to halve the images (CF-NeRF's scripts: 2 at the start of the coarse-to-fine schedule).
    eval_mode: ``"filename"`` (nerfstudio's split by basename) or ``"all"`` (train on every frame, no evaluation).
    frame_list: Ordered image list relative to the scene folder (used when there is no ``transforms.json``).
    steps_per_epoch: Length of the step-pacing training loader.
    synthetic_frames, synthetic_size, synthetic_arc_deg, synthetic_height_swing, synthetic_seed: The synthetic
        scene (``root=None``, see :func:`~lightning_hpml.datamodules.synthetic.nerfbuster_writer.write_synthetic_nerfbuster`).
    synthetic_dir: Where ``root=None`` writes its tree (default: a per-options cache folder).
    """

    synthetic_folder = "nerfbuster"

    def __init__(
        self,
        root: str | None = None,
        scene: str = "tabletop",
        pyramid_level: int = 0,
        eval_mode: str = "filename",
        frame_list: str | None = None,
        steps_per_epoch: int = 1000,
        synthetic_frames: int = 8,
        synthetic_size: tuple[int, int] = (96, 128),
        synthetic_arc_deg: float = 50.0,
        synthetic_height_swing: float = 0.6,
        synthetic_seed: int = 0,
        synthetic_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.synthetic_dir = synthetic_dir
        if eval_mode not in ("filename", "all"):
            raise ValueError(f"`eval_mode` must be 'filename' or 'all', got {eval_mode!r}")
        if pyramid_level < 0:
            raise ValueError(f"`pyramid_level` must be >= 0, got {pyramid_level}")
        self.root, self.scene, self.pyramid_level, self.eval_mode = root, scene, pyramid_level, eval_mode
        self.frame_list, self.steps_per_epoch = frame_list, steps_per_epoch
        self.synthetic = {
            "scene": scene,
            "train_frames": synthetic_frames,
            "height": synthetic_size[0],
            "width": synthetic_size[1],
            "arc_deg": synthetic_arc_deg,
            "height_swing": synthetic_height_swing,
            "seed": synthetic_seed,
        }
        self._full: dict[str, tuple[list[np.ndarray], list[str], np.ndarray | None, np.ndarray | None]] = {}

    @property
    def scene_dir(self) -> Path:
        return self.data_root / self.scene

    def resolved_synthetic_options(self) -> dict:
        return dict(self.synthetic)

    def write_synthetic_tree(self, folder: Path) -> None:
        write_synthetic_nerfbuster(folder, **self.synthetic)

    def setup(self, stage: str) -> None:
        folder = self.scene_dir
        transforms = folder / "transforms.json"
        if transforms.is_file():
            frames = read_transforms_json(transforms)
            splits: dict[str, list] = {"train": [], "eval": []}
            for frame in frames:
                base = frame.file_path.name
                split = "train" if self.eval_mode == "all" or "train" in base else "eval" if "eval" in base else None
                if split is None:
                    raise ValueError(
                        f"{transforms}: frame {base!r} has neither 'train' nor 'eval' in its name, which nerfstudio's "
                        "filename split needs; pass eval_mode='all' to train on every frame"
                    )
                splits[split].append(frame)
            for split, chosen in splits.items():
                self._full[split] = (
                    [read_rgb(f.file_path) for f in chosen],
                    [f.file_path.name for f in chosen],
                    np.stack([opengl_to_opencv(f.camera_to_world) for f in chosen]) if chosen else None,
                    np.stack([f.intrinsic for f in chosen]) if chosen else None,
                )
        else:
            if self.frame_list is not None:
                names = [line.strip() for line in (folder / self.frame_list).read_text().splitlines() if line.strip()]
                paths = [folder / name for name in names]
            elif (folder / "images").is_dir():
                paths = sorted(p for p in (folder / "images").iterdir() if p.suffix in _IMAGE_SUFFIXES)
            else:
                raise FileNotFoundError(
                    f"scene folder {folder}: found neither transforms.json, a frame list, nor an images/ folder"
                )
            if not paths:
                raise FileNotFoundError(f"scene folder {folder}: no images (.png/.jpg) to read")
            self._full["train"] = ([read_rgb(p) for p in paths], [p.name for p in paths], None, None)
            self._full["eval"] = ([], [], None, None)
        if len(self._full["train"][0]) < 3:
            raise ValueError(f"scene folder {folder}: CF-NeRF needs at least 3 training images, found "
                             f"{len(self._full['train'][0])}")  # fmt: skip
        shapes = {image.shape for image in self._full["train"][0] + self._full["eval"][0]}
        if len(shapes) != 1:
            raise ValueError(f"scene folder {folder}: images differ in size {sorted(shapes)}; expected one size")

    def sequence(self, split: str = "train", level: int | None = None) -> ImageSequence:
        """The ``split`` frames reduced ``level`` times (default: ``pyramid_level``)."""
        level = self.pyramid_level if level is None else level
        images, names, poses, intrinsics = self._full[split]
        reduced = [_pyramid(image, level) for image in images]
        factor = 2.0**level
        if reduced:  # per-axis factors: odd sizes do not halve exactly
            factor = np.array(images[0].shape[1::-1], dtype=np.float64) / np.array(reduced[0].shape[1::-1])
        tensor = torch.from_numpy(np.stack(reduced)).permute(0, 3, 1, 2).float() / 255.0 if reduced else torch.empty(0)
        return ImageSequence(
            images=tensor,
            names=list(names),
            camera_to_world=None if poses is None else torch.from_numpy(poses).float(),
            intrinsics=None
            if intrinsics is None
            else torch.from_numpy(downsample_intrinsics(intrinsics, factor)).float(),
        )

    def train_sequence(self, level: int | None = None) -> ImageSequence:
        return self.sequence("train", level)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_StepPacer(self.steps_per_epoch), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        sequence = self.sequence("eval")
        if not sequence.names or sequence.camera_to_world is None:
            raise ValueError(f"scene {self.scene_dir}: no evaluation frames with ground-truth cameras to test on")
        return DataLoader(_EvalFrames(sequence), batch_size=1)
