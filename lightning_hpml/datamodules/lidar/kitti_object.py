"""KITTI 3D object detection DataModule (LiDAR), reading the benchmark folders as distributed.

Dataset: Geiger, Lenz and Urtasun, "Are we ready for Autonomous Driving? The KITTI Vision Benchmark Suite", CVPR
2012. Layout under ``root`` (file formats in :mod:`lightning_hpml.datamodules.formats.kitti_object`)::

    ImageSets/{train,val,test}.txt                   frame ids (3712 / 3769 / 7518 in the common split)
    training/{velodyne,calib,image_2,label_2}/NNNNNN.{bin,txt,png,txt}
    testing/{velodyne,calib,image_2}/NNNNNN.*        (no labels)

A split named ``test`` reads ``testing/`` (as OpenPCDet does); any other split name reads ``training/``. The
``test`` stage uses ``test_split`` (default ``"val"``: the benchmark's test labels are not public, so results are
reported on val); ``predict`` uses ``predict_split`` (default ``"test"``). ``root=None`` writes a small synthetic tree
in the same layout (:func:`~lightning_hpml.datamodules.synthetic.kitti_object_writer.write_kitti_object`) into a
cache folder and reads it with the same code.

Processing per frame, in OpenPCDet's order (the IA-SSD / RIDE KITTI recipe):

1. read the scan; with ``fov_only`` keep the points that project into image 2 (rect depth >= 0);
2. convert the labels (all but DontCare) to LiDAR boxes ``(x, y, z_centre, l, w, h, yaw)``;
3. training only: ground-truth sampling, random flip along x, global rotation, global scaling
   (:mod:`.augmentation`), seeded by ``(seed, epoch, index)``;
4. keep boxes of ``classes``; keep points inside the x-y extent of ``point_cloud_range`` and boxes with at least
   one bird's-eye corner inside it, and (``min_box_points > 0``) with at least that many points (default 0: boxes
   are kept even without points, as in OpenPCDet; a detector simply gets no positive points for them);
5. ``num_points``: sample / pad to a fixed count (IA-SSD), seeded per sample (also in evaluation, so that
   evaluation is deterministic); ``None`` keeps every point (shuffled in training);
6. evaluation with ``test_rotation="random"`` (RIDE's arbitrary-rotation protocol): rotate points and boxes about z
   by an angle uniform in [-pi, pi] drawn from ``(seed, frame id)``, so every run sees the same angles; the angle
   is returned in ``rotation`` and the raw ``annos`` stay unrotated (rotate predictions back by ``-rotation``
   before the KITTI evaluation).

Batch (dict of per-sample lists, see :func:`kitti_object_collate`): ``points`` list of float32 ``(N_i, 4)`` x, y, z,
reflectance; ``boxes`` list of float32 ``(M_i, 7)``; ``labels`` list of int64 ``(M_i,)``, 1-based indices into
``classes``; ``frame_id`` list[str]; ``calib`` list of :class:`~lightning_hpml.datamodules.formats.kitti_object.KittiCalibration`; ``annos`` list of the raw label
dicts (camera frame, unrotated, DontCare included; empty for unlabelled frames); ``rotation`` float32 ``(B,)``;
``image_shape`` list of ``(H, W)``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from typing_extensions import override

from lightning_hpml.datamodules.formats.kitti_object import (
    KittiObjectFormatError,
    camera_boxes_to_lidar,
    empty_label,
    points_in_boxes,
    points_in_fov,
    read_calib,
    read_image_set,
    read_label,
    read_velodyne,
)
from lightning_hpml.datamodules.lidar.augmentation import (
    GTDatabase,
    boxes_in_range,
    points_in_range,
    random_flip_x,
    rotate_about_z,
    sample_points,
)
from lightning_hpml.datamodules.lidar.augmentation import (
    global_scaling as scale_scene,
)
from lightning_hpml.datamodules.lidar.augmentation import (
    gt_sampling as paste_gt_objects,
)
from lightning_hpml.datamodules.lidar.base import LiDARDataModule, check_lidar_arguments
from lightning_hpml.datamodules.synthetic.kitti_object_writer import write_kitti_object

__all__ = [
    "KITTI_OBJECT_LAYOUT",
    "RIDE_GT_SAMPLING",
    "KITTIObjectDataModule",
    "KittiObjectDataset",
    "kitti_object_collate",
]

KITTI_OBJECT_LAYOUT = (
    "<root>/ImageSets/<split>.txt, <root>/training/{velodyne,calib,image_2,label_2}/NNNNNN.{bin,txt,png,txt} and "
    "<root>/testing/{velodyne,calib,image_2}/NNNNNN.* (a split named 'test' reads testing/)"
)
"""The layout quoted in missing-file errors."""

RIDE_GT_SAMPLING: dict[str, int] = {"Car": 20, "Pedestrian": 15, "Cyclist": 15}
"""Ground-truth sampling targets of the IA-SSD / RIDE KITTI configs."""

_EVAL_STREAM = 0x45564131  # separates evaluation sampling seeds from training (epoch, index) seeds
_ROTATION_STREAM = 0x52494445  # "RIDE": the test-rotation angle stream


class KittiObjectDataset(Dataset):
    """Frames of one split, processed as described in the module docstring.

    Indexing takes an ``int`` (no epoch: evaluation, or epoch 0) or an ``(epoch, index)`` pair from
    :class:`~lightning_hpml.datamodules.stereo.sampling.EpochSeededSampler`.

    Args:
        root: Dataset root.
        part: ``"training"`` or ``"testing"``.
        frame_ids: 6-digit ids.
        classes: Class names; ``labels`` are 1-based indices into it.
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)``.
        fov_only: Keep only points in image 2's view.
        num_points: Fixed point count, or ``None``.
        train: Apply the training augmentation and shuffling.
        database: Ground-truth database for ``gt_targets``.
        gt_targets: Class -> total objects after ground-truth sampling.
        flip_x: Random flip along x.
        global_rotation: ``(low, high)`` radians or ``None``.
        global_scaling: ``(low, high)`` or ``None``.
        test_rotation: ``"random"`` rotates evaluation frames (RIDE protocol).
        min_box_points: Drop boxes with fewer points (after range filtering).
        seed: Base seed.
    """

    def __init__(
        self,
        root: Path,
        part: str,
        frame_ids: list[str],
        *,
        classes: tuple[str, ...],
        point_cloud_range: np.ndarray,
        fov_only: bool,
        num_points: int | None,
        train: bool,
        database: GTDatabase | None = None,
        gt_targets: dict[str, int] | None = None,
        flip_x: bool = False,
        global_rotation: tuple[float, float] | None = None,
        global_scaling: tuple[float, float] | None = None,
        test_rotation: Literal["none", "random"] = "none",
        min_box_points: int = 0,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.part = part
        self.frame_ids = list(frame_ids)
        self.labelled = part == "training"
        self.classes = tuple(classes)
        self.point_cloud_range = np.asarray(point_cloud_range, dtype=np.float64)
        self.fov_only = fov_only
        self.num_points = num_points
        self.train = train
        self.database = database
        self.gt_targets = dict(gt_targets or {})
        self.flip_x = flip_x
        self.global_rotation = global_rotation
        self.global_scaling = global_scaling
        self.test_rotation = test_rotation
        self.min_box_points = min_box_points
        self.seed = seed

    def __len__(self) -> int:
        return len(self.frame_ids)

    def path(self, folder: str, frame_id: str) -> Path:
        """``<root>/<part>/<folder>/<frame_id>.<ext>`` for velodyne, calib, image_2 or label_2."""
        suffix = {"velodyne": ".bin", "calib": ".txt", "image_2": ".png", "label_2": ".txt"}[folder]
        return self.root / self.part / folder / f"{frame_id}{suffix}"

    def folders(self) -> tuple[str, ...]:
        """Folders every frame of this split needs."""
        return ("velodyne", "calib", "image_2", "label_2") if self.labelled else ("velodyne", "calib", "image_2")

    def image_shape(self, frame_id: str) -> tuple[int, int]:
        """``(height, width)`` of image 2, read from the PNG header only."""
        path = self.path("image_2", frame_id)
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError) as err:
            if not path.exists():
                raise FileNotFoundError(f"{path}: image 2 not found; expected layout: {KITTI_OBJECT_LAYOUT}") from None
            raise KittiObjectFormatError(path, f"cannot read the image header ({err})") from None
        return height, width

    def load(self, index: int) -> dict[str, Any]:
        """Read frame ``index``: raw points (FOV-filtered if configured), calib, label dict, LiDAR boxes, names."""
        frame_id = self.frame_ids[index]
        points = read_velodyne(self.path("velodyne", frame_id))
        calib = read_calib(self.path("calib", frame_id))
        image_shape = self.image_shape(frame_id)
        if self.fov_only:
            points = points[points_in_fov(points, calib, image_shape)]
        annos = read_label(self.path("label_2", frame_id)) if self.labelled else empty_label()
        real = annos["name"] != "DontCare"
        boxes = camera_boxes_to_lidar(
            annos["location"][real], annos["dimensions"][real], annos["rotation_y"][real], calib
        )
        return {
            "frame_id": frame_id,
            "points": points,
            "calib": calib,
            "image_shape": image_shape,
            "annos": annos,
            "boxes": boxes,
            "names": annos["name"][real],
        }

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            epoch, index = key
        else:
            epoch, index = 0, key
        try:
            return self._item(int(epoch), int(index))
        except ValueError as err:
            if isinstance(err, KittiObjectFormatError):
                raise
            raise ValueError(f"{self.path('velodyne', self.frame_ids[index])}: {err}") from err

    def _item(self, epoch: int, index: int) -> dict[str, Any]:
        frame = self.load(index)
        points, boxes, names = frame["points"], frame["boxes"], frame["names"]
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
            if self.database is not None and self.gt_targets:
                points, boxes, names = paste_gt_objects(points, boxes, names, self.database, self.gt_targets, rng)
            if self.flip_x:
                points, boxes, _ = random_flip_x(points, boxes, rng)
            if self.global_rotation is not None:
                points, boxes = rotate_about_z(points, boxes, float(rng.uniform(*self.global_rotation)))
            if self.global_scaling is not None:
                points, boxes = scale_scene(points, boxes, float(rng.uniform(*self.global_scaling)))
        else:
            rng = np.random.default_rng([self.seed, _EVAL_STREAM, index])

        keep = np.isin(names, self.classes)
        boxes, names = boxes[keep], names[keep]
        points = points[points_in_range(points, self.point_cloud_range)]
        keep = boxes_in_range(boxes, self.point_cloud_range)
        boxes, names = boxes[keep], names[keep]
        if self.min_box_points > 0 and len(boxes):
            keep = points_in_boxes(points, boxes).sum(axis=0) >= self.min_box_points
            boxes, names = boxes[keep], names[keep]
        if self.num_points is not None:
            if len(points) == 0:
                raise ValueError(f"no points left in point_cloud_range {self.point_cloud_range.tolist()}")
            points = sample_points(points, self.num_points, rng)
        elif self.train:
            points = points[rng.permutation(len(points))]

        angle = 0.0
        if not self.train and self.test_rotation == "random":
            angle = float(
                np.random.default_rng([self.seed, _ROTATION_STREAM, int(frame["frame_id"])]).uniform(-math.pi, math.pi)
            )
            points, boxes = rotate_about_z(points, boxes, angle)

        labels = np.array([self.classes.index(n) + 1 for n in names], dtype=np.int64)
        return {
            "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 7)),
            "labels": torch.from_numpy(labels),
            "frame_id": frame["frame_id"],
            "calib": frame["calib"],
            "annos": frame["annos"],
            "rotation": angle,
            "image_shape": frame["image_shape"],
        }


def kitti_object_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch frames as lists (point and box counts differ per frame); ``rotation`` becomes a float32 tensor."""
    batch: dict[str, Any] = {key: [item[key] for item in items] for key in items[0]}
    batch["rotation"] = torch.tensor(batch["rotation"], dtype=torch.float32)
    return batch


class KITTIObjectDataModule(LiDARDataModule):
    """KITTI 3D object detection from LiDAR, with the IA-SSD / RIDE KITTI training recipe.

    Args:
        root: Folder holding ``ImageSets/``, ``training/`` and ``testing/``; ``None`` generates a synthetic tree.
        train_split: ImageSets list to train on.
        val_split: ImageSets list to validate on.
        test_split: ImageSets list of the ``test`` stage (``"val"``: labelled; ``"test"``: ``testing/``, no labels).
        predict_split: ImageSets list of the ``predict`` stage.
        classes: Classes to detect; ``labels`` are 1-based indices in this order.
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in metres; points and boxes outside
            its x-y extent are dropped (OpenPCDet, which ignores z for point-based detectors).
        fov_only: Keep only points in the camera's view (KITTI labels only objects visible in image 2).
        num_points: Points per frame after sampling / padding (IA-SSD: 16384); ``None`` keeps all.
        gt_sampling: Class -> total objects per training frame after pasting database objects (RIDE: Car 20,
            Pedestrian 15, Cyclist 15, the default ``None`` for those of ``classes``); ``{}`` disables it. The
            database is built in ``setup`` from the ``train_split`` frames (reading every training scan once, about
            a minute for real KITTI's 3712 frames) and kept in memory.
        gt_sampling_min_points: Database objects need at least this many points (OpenPCDet: 5).
        flip_x: Random flip along the x axis (probability 1/2).
        global_rotation: Training rotation range about z in radians, ``None`` to disable.
        global_scaling: Training scale range, ``None`` to disable.
        test_rotation: ``"random"``: RIDE's arbitrary-rotation evaluation (val, test and predict frames rotated by
            a reproducible per-frame angle, returned in ``rotation``); ``"none"``: no rotation.
        min_box_points: Drop boxes with fewer points after range filtering (0 keeps all, as OpenPCDet).
        batch_size: Training batch size (per process).
        eval_batch_size: Evaluation batch size; ``None`` = ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: Seed of shuffling, augmentation, point sampling, test rotation and synthetic data.
        synthetic_dir: Where ``root=None`` writes its tree (default: a per-options cache folder).
        synthetic_options: Keyword arguments for ``write_kitti_object`` (e.g. ``num_train``, ``azimuth_steps``).

    Raises:
        ValueError: An argument is out of range or names an unknown class.
    """

    synthetic_folder = "kitti_object"
    collate_fn = staticmethod(kitti_object_collate)

    def __init__(
        self,
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
        predict_split: str = "test",
        classes: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist"),
        point_cloud_range: tuple[float, float, float, float, float, float] = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0),
        fov_only: bool = True,
        num_points: int | None = 16384,
        gt_sampling: dict[str, int] | None = None,
        gt_sampling_min_points: int = 5,
        flip_x: bool = True,
        global_rotation: tuple[float, float] | None = (-math.pi / 4, math.pi / 4),
        global_scaling: tuple[float, float] | None = (0.95, 1.05),
        test_rotation: Literal["none", "random"] = "none",
        min_box_points: int = 0,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        seed: int = 0,
        synthetic_dir: str | None = None,
        synthetic_options: dict | None = None,
    ) -> None:
        super().__init__()
        classes = tuple(classes)
        if not classes or len(set(classes)) != len(classes) or not all(isinstance(c, str) and c for c in classes):
            raise ValueError(f"`classes` must be distinct non-empty names, got {classes!r}")
        if "DontCare" in classes:
            raise ValueError("`classes` cannot contain 'DontCare' (it marks ignored regions, not objects)")
        if gt_sampling is None:
            gt_sampling = {name: count for name, count in RIDE_GT_SAMPLING.items() if name in classes}
        gt_sampling = dict(gt_sampling)
        unknown = [c for c in gt_sampling if c not in classes]
        if unknown or any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in gt_sampling.values()):
            raise ValueError(
                f"`gt_sampling` must map names from classes={list(classes)} to non-negative counts, got {gt_sampling!r}"
            )
        pcr = check_lidar_arguments(
            point_cloud_range,
            num_points,
            global_rotation,
            global_scaling,
            test_rotation,
            eval_batch_size,
            synthetic_options,
            {
                "batch_size": (batch_size, 1),
                "num_workers": (num_workers, 0),
                "gt_sampling_min_points": (gt_sampling_min_points, 1),
                "min_box_points": (min_box_points, 0),
                "seed": (seed, 0),
            },
        )
        self.save_hyperparameters()
        self.root = root
        self.splits = {"train": train_split, "val": val_split, "test": test_split, "predict": predict_split}
        self.classes = classes
        self.point_cloud_range = np.array(pcr, dtype=np.float64)
        self.fov_only = fov_only
        self.num_points = num_points
        self.gt_sampling = gt_sampling
        self.gt_sampling_min_points = gt_sampling_min_points
        self.flip_x = flip_x
        self.global_rotation = (
            None if global_rotation is None else (float(global_rotation[0]), float(global_rotation[1]))
        )
        self.global_scaling = None if global_scaling is None else (float(global_scaling[0]), float(global_scaling[1]))
        self.test_rotation = test_rotation
        self.min_box_points = min_box_points
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.synthetic_dir = synthetic_dir
        self.synthetic_options = dict(synthetic_options or {})
        self.datasets: dict[str, KittiObjectDataset] = {}
        self.database: GTDatabase | None = None

    # -------------------------------------------------------------------------------------------- data location
    def resolved_synthetic_options(self) -> dict[str, Any]:
        """Writer options for ``root=None``: ``{"seed": seed}`` updated by ``synthetic_options``."""
        return {"seed": self.seed, **self.synthetic_options}

    # ----------------------------------------------------------------------------------------------- life cycle
    def write_synthetic_tree(self, folder: Path) -> None:
        write_kitti_object(folder, **self.resolved_synthetic_options())

    @override
    def setup(self, stage: str) -> None:
        """Build the datasets of ``stage`` (fit: train + val, and the ground-truth database if enabled).

        Raises:
            ValueError: Unknown ``stage``.
            FileNotFoundError: The root, a split list or a frame's file is missing (the message lists what was
                looked for), or ``root=None`` and ``prepare_data`` has not run.
            KittiObjectFormatError: A split list is malformed.
        """
        splits = self._check_stage(stage)
        for split in splits:
            self.datasets[split] = self.build_dataset(split)

    def _frames(self, split_name: str) -> tuple[str, list[str]]:
        root = self.data_root
        part = "testing" if split_name == "test" else "training"
        list_file = root / "ImageSets" / f"{split_name}.txt"
        if not list_file.is_file():
            state = "does not exist" if not root.is_dir() else f"holds {sorted(p.name for p in root.iterdir())[:8]}"
            raise FileNotFoundError(
                f"KITTI object split list {list_file} not found (root {root} {state}); expected layout: "
                f"{KITTI_OBJECT_LAYOUT}"
            )
        frame_ids = read_image_set(list_file)
        if not frame_ids:
            raise ValueError(f"{list_file}: the split list is empty")
        return part, frame_ids

    def build_dataset(self, split: str) -> KittiObjectDataset:
        """Parse ``split`` (``train``/``val``/``test``/``predict``), check its files, wrap it in a dataset."""
        part, frame_ids = self._frames(self.splits[split])
        train = split == "train"
        database = None
        if train and self.gt_sampling:
            database = self.build_database(part, frame_ids)
        dataset = KittiObjectDataset(
            self.data_root,
            part,
            frame_ids,
            classes=self.classes,
            point_cloud_range=self.point_cloud_range,
            fov_only=self.fov_only,
            num_points=self.num_points,
            train=train,
            database=database,
            gt_targets=self.gt_sampling,
            flip_x=self.flip_x and train,
            global_rotation=self.global_rotation if train else None,
            global_scaling=self.global_scaling if train else None,
            test_rotation=self.test_rotation,
            min_box_points=self.min_box_points,
            seed=self.seed,
        )
        missing = [
            dataset.path(folder, frame_id)
            for folder in dataset.folders()
            for frame_id in frame_ids
            if not dataset.path(folder, frame_id).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} files of the {self.splits[split]!r} split are missing under {self.data_root}, e.g. "
                f"{missing[0]}; expected layout: {KITTI_OBJECT_LAYOUT}"
            )
        return dataset

    def build_database(self, part: str, frame_ids: list[str]) -> GTDatabase:
        """Cut the ``gt_sampling`` classes' objects (>= ``gt_sampling_min_points`` points) out of the train scans."""
        reader = KittiObjectDataset(
            self.data_root,
            part,
            frame_ids,
            classes=self.classes,
            point_cloud_range=self.point_cloud_range,
            fov_only=False,
            num_points=None,
            train=False,
        )
        start = time.perf_counter()

        def frames():
            for index, frame_id in enumerate(frame_ids):
                frame = reader.load(index)
                yield frame_id, frame["points"], frame["boxes"], frame["names"]

        database = GTDatabase.build(frames(), self.gt_sampling, min_points=self.gt_sampling_min_points)
        counts = {name: database.count(name) for name in self.gt_sampling}
        rank_zero_info(
            f"{type(self).__name__}: ground-truth database from {len(frame_ids)} frames in "
            f"{time.perf_counter() - start:.1f} s: {counts}"
        )
        empty = [name for name, count in counts.items() if count == 0 and self.gt_sampling[name] > 0]
        if empty:
            rank_zero_info(f"{type(self).__name__}: no database objects for {empty}; those classes are not sampled")
        self.database = database
        return database
