"""nuScenes 3D object detection DataModule (LiDAR), reading the dataset as distributed through the nuscenes-devkit.

Dataset: Caesar et al., "nuScenes: A multimodal dataset for autonomous driving", CVPR 2020. Tables are loaded with
the devkit's ``NuScenes`` class (https://github.com/nutonomy/nuscenes-devkit); the processing follows the facts of
OpenPCDet's ``pcdet/datasets/nuscenes/{nuscenes_utils,nuscenes_dataset}.py`` (the pipeline 3DSSD / IA-SSD / RIDE use
on nuScenes), reimplemented, no code copied. Layout under ``root``::

    <version>/{attribute,calibrated_sensor,category,ego_pose,instance,log,map,sample,sample_annotation,
               sample_data,scene,sensor,visibility}.json     (version: v1.0-mini, v1.0-trainval, ...)
    samples/LIDAR_TOP/*.pcd.bin      keyframes, float32 x 5 (x, y, z, intensity, ring)
    sweeps/LIDAR_TOP/*.pcd.bin       intermediate scans
    maps/*.png                       (the devkit checks that the map files exist)

Splits are lists of scene names: the devkit's predefined ones (``nuscenes.utils.splits``: ``train``/``val`` of
``v1.0-trainval``, 700/150 scenes; ``mini_train``/``mini_val`` of ``v1.0-mini``, 8/2) or custom ones from
``<root>/<version>/splits.json`` (the devkit's custom-split file, ``{"name": [scene names]}``). ``root=None`` writes
a synthetic tree (:func:`~lightning_hpml.datamodules.synthetic.nuscenes_writer.write_nuscenes`) whose scenes are
``synthetic-0001``, ... and whose ``splits.json`` defines ``synthetic_train`` and ``synthetic_val`` (the last
scene); those are then the default splits. The ``test`` stage uses ``test_split`` (default: the validation split;
the test set's annotations are not public), ``predict`` uses ``predict_split`` (default: the same).

Processing per keyframe (``sample``), in OpenPCDet's order:

1. points: the keyframe's LIDAR_TOP scan plus the ``max_sweeps - 1`` previous LiDAR scans (sweeps, and earlier
   keyframes, following ``sample_data.prev`` within the scene; ``max_sweeps`` counts the keyframe, as OpenPCDet's
   ``MAX_SWEEPS`` and the devkit's ``nsweeps`` do). Each older scan loses its ego-vehicle points (``|x| < 1`` and
   ``|y| < 1`` m in its own LiDAR frame, OpenPCDet's ``remove_ego_points``; the keyframe keeps them, as there), is
   moved into the keyframe LiDAR frame by ``ref_from_car @ car_from_global @ global_from_car @ car_from_sweep``
   (calibrated_sensor and ego_pose records), and gets a 5th channel, the time lag ``t_key - t_scan`` in seconds
   (0 for the keyframe). Columns: x, y, z, intensity, time lag. Deviation: at a scene start OpenPCDet pads the sweep
   list by repeating the oldest sweep (duplicate points); here fewer scans are used instead;
2. boxes: the sample's annotations moved from the global frame into the keyframe LiDAR frame as
   ``(x, y, z_centre, l, w, h, yaw)`` (nuScenes stores ``size`` as w, l, h), velocities (devkit ``box_velocity``,
   rotated into the LiDAR frame; NaN for single annotations becomes 0, OpenPCDet's ``SET_NAN_VELOCITY_TO_ZEROS``),
   the general category mapped to the detection class (official mapping, others ignored); boxes with fewer than
   ``min_lidar_points`` LiDAR points are dropped (default 1: OpenPCDet's ``FILTER_MIN_POINTS_IN_GT: 1``; the
   official evaluation ignores boxes without any LiDAR or radar point too);
3. training only: random flips along x and y, global rotation, global scaling (:mod:`.augmentation`; velocities
   follow), seeded by ``(seed, epoch, index)``;
4. keep boxes of ``classes``; keep points inside the x-y extent of ``point_cloud_range`` and boxes with at least
   one bird's-eye corner inside it;
5. ``num_points``: sample / pad to a fixed count (point-based detectors), seeded per sample; ``None`` keeps all;
6. evaluation with ``test_rotation="random"``: rotate points, boxes and velocities about z by an angle uniform in
   [-pi, pi] drawn from ``(seed, sample token)`` (RIDE's arbitrary-rotation protocol), returned in ``rotation``.

Not included: ground-truth sampling and CBGS class-balanced resampling of the nuScenes training recipe.

Batch (dict of per-sample lists, :func:`~lightning_hpml.datamodules.lidar.kitti_object.kitti_object_collate`):
``points`` float32 ``(N_i, 5)``; ``boxes`` float32 ``(M_i, 7)``; ``labels`` int64 ``(M_i,)`` 1-based into
``classes``; ``velocity`` float32 ``(M_i, 2)`` vx, vy in the LiDAR frame; ``frame_id`` and ``sample_token`` (the
sample token, str); ``calib`` dict with float64 4x4 ``lidar_to_ego`` and ``ego_to_global`` and the keyframe
``timestamp`` (microseconds); ``rotation`` float32 ``(B,)``.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from typing_extensions import override

from lightning_hpml.datamodules.formats.kitti_object import wrap_angle
from lightning_hpml.datamodules.formats.nuscenes import (
    DETECTION_CLASSES,
    GENERAL_TO_DETECTION,
    NUSCENES_LAYOUT,
    global_boxes_to_lidar,
    load_nuscenes,
    pose_matrix,
    read_lidar_bin,
    scenes_of_split,
)
from lightning_hpml.datamodules.lidar.augmentation import (
    boxes_in_range,
    global_scaling,
    points_in_range,
    random_flip_x,
    rotate_about_z,
    sample_points,
)
from lightning_hpml.datamodules.lidar.base import LiDARDataModule, check_lidar_arguments
from lightning_hpml.datamodules.lidar.kitti_object import kitti_object_collate
from lightning_hpml.datamodules.synthetic.nuscenes_writer import (
    SYNTHETIC_TRAIN_SPLIT,
    SYNTHETIC_VAL_SPLIT,
    write_nuscenes,
)

__all__ = ["NuScenesDataModule", "NuScenesDataset", "nuscenes_frame_infos"]


_EVAL_STREAM = 0x45564131
_ROTATION_STREAM = 0x52494445
_EGO_RADIUS = 1.0


def _record_matrix(record: dict, inverse: bool = False) -> np.ndarray:
    return pose_matrix(record["translation"], record["rotation"], inverse=inverse)


def nuscenes_frame_infos(nusc: Any, scene_names: list[str], max_sweeps: int) -> list[dict[str, Any]]:
    """Per-keyframe records of the scenes, in scene and time order (OpenPCDet's "infos", computed on the fly).

    Each dict: ``sample_token``, ``scene_name``, ``timestamp``, ``lidar_path`` (relative to the root), ``sweeps``
    (list of ``(relative path, 4x4 sweep LiDAR -> keyframe LiDAR, time lag s)``, newest first), ``lidar_to_ego`` and
    ``ego_to_global`` (4x4), ``boxes`` (M, 7) in the keyframe LiDAR frame, ``names`` (M,) detection class or
    ``"ignore"``, ``categories`` (M,) general category, ``attributes`` (M,) attribute name or ``""``, ``velocity``
    (M, 2) LiDAR frame (NaN -> 0), ``num_lidar_pts`` and ``num_radar_pts`` (M,), ``annotation_tokens`` (M,).
    """
    attribute_name = {a["token"]: a["name"] for a in nusc.attribute}
    by_name = {scene["name"]: scene for scene in nusc.scene}
    infos = []
    for scene_name in scene_names:
        token = by_name[scene_name]["first_sample_token"]
        while token:
            sample = nusc.get("sample", token)
            sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            lidar_to_ego, ego_to_global = _record_matrix(cs), _record_matrix(pose)
            global_to_ref = np.linalg.inv(ego_to_global @ lidar_to_ego)
            sweeps = []
            current = sd
            while len(sweeps) < max_sweeps - 1 and current["prev"]:
                current = nusc.get("sample_data", current["prev"])
                to_global = _record_matrix(nusc.get("ego_pose", current["ego_pose_token"])) @ _record_matrix(
                    nusc.get("calibrated_sensor", current["calibrated_sensor_token"])
                )
                lag = 1e-6 * (sd["timestamp"] - current["timestamp"])
                sweeps.append((current["filename"], global_to_ref @ to_global, lag))
            anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
            lidar_to_global = ego_to_global @ lidar_to_ego
            if anns:
                boxes = global_boxes_to_lidar(
                    np.array([a["translation"] for a in anns]),
                    np.array([a["size"] for a in anns]),
                    np.array([a["rotation"] for a in anns]),
                    lidar_to_global,
                )
                velocity = np.array([nusc.box_velocity(a["token"]) for a in anns], dtype=np.float64)
                velocity = np.nan_to_num(velocity, nan=0.0) @ global_to_ref[:3, :3].T
            else:
                boxes, velocity = np.zeros((0, 7)), np.zeros((0, 3))
            infos.append(
                {
                    "sample_token": sample["token"],
                    "scene_name": scene_name,
                    "timestamp": int(sd["timestamp"]),
                    "lidar_path": sd["filename"],
                    "sweeps": sweeps,
                    "lidar_to_ego": lidar_to_ego,
                    "ego_to_global": ego_to_global,
                    "boxes": boxes,
                    "names": np.array([GENERAL_TO_DETECTION.get(a["category_name"], "ignore") for a in anns], "<U24"),
                    "categories": np.array([a["category_name"] for a in anns], dtype="<U40"),
                    "attributes": np.array(
                        [attribute_name[a["attribute_tokens"][0]] if a["attribute_tokens"] else "" for a in anns],
                        dtype="<U32",
                    ),
                    "velocity": velocity[:, :2],
                    "num_lidar_pts": np.array([a["num_lidar_pts"] for a in anns], dtype=np.int64),
                    "num_radar_pts": np.array([a["num_radar_pts"] for a in anns], dtype=np.int64),
                    "annotation_tokens": [a["token"] for a in anns],
                }
            )
            token = sample["next"]
    return infos


def _flip_y(points: np.ndarray, boxes: np.ndarray, velocity: np.ndarray):
    """Mirror about the y axis (x -> -x, yaw -> pi - yaw, vx -> -vx): OpenPCDet's ``random_flip_along_y``."""
    points, boxes, velocity = points.copy(), boxes.copy(), velocity.copy()
    points[:, 0] = -points[:, 0]
    boxes[:, 0] = -boxes[:, 0]
    boxes[:, 6] = wrap_angle(math.pi - boxes[:, 6])
    velocity[:, 0] = -velocity[:, 0]
    return points, boxes, velocity


def _rotate_velocity(velocity: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return velocity @ np.array([[cos, sin], [-sin, cos]])


class NuScenesDataset(Dataset):
    """Keyframes of one split, processed as described in the module docstring.

    Indexing takes an ``int`` or an ``(epoch, index)`` pair from
    :class:`~lightning_hpml.datamodules.stereo.sampling.EpochSeededSampler`. Holds only plain arrays (no
    ``NuScenes`` object), so it is cheap to send to DataLoader workers.

    Args:
        root: Dataset root.
        infos: From :func:`nuscenes_frame_infos`.
        classes: Detection classes; ``labels`` are 1-based indices into it.
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)``.
        num_points: Fixed point count, or ``None``.
        train: Apply the training augmentation and shuffling.
        flip: Random flips along x and along y (each with probability 1/2).
        global_rotation: ``(low, high)`` radians or ``None``.
        global_scaling: ``(low, high)`` or ``None``.
        test_rotation: ``"random"`` rotates evaluation samples.
        min_lidar_points: Drop annotations with fewer LiDAR points (``num_lidar_pts``).
        seed: Base seed.
    """

    def __init__(
        self,
        root: Path,
        infos: list[dict[str, Any]],
        *,
        classes: tuple[str, ...],
        point_cloud_range: np.ndarray,
        num_points: int | None,
        train: bool,
        flip: bool = False,
        global_rotation: tuple[float, float] | None = None,
        global_scaling: tuple[float, float] | None = None,
        test_rotation: Literal["none", "random"] = "none",
        min_lidar_points: int = 1,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.infos = infos
        self.classes = tuple(classes)
        self.point_cloud_range = np.asarray(point_cloud_range, dtype=np.float64)
        self.num_points = num_points
        self.train = train
        self.flip = flip
        self.global_rotation = global_rotation
        self.global_scaling = global_scaling
        self.test_rotation = test_rotation
        self.min_lidar_points = min_lidar_points
        self.seed = seed

    def __len__(self) -> int:
        return len(self.infos)

    def load_points(self, index: int) -> np.ndarray:
        """Multi-sweep points ``(N, 5)`` float32 in the keyframe LiDAR frame: x, y, z, intensity, time lag."""
        info = self.infos[index]
        key = read_lidar_bin(self.root / info["lidar_path"])[:, :4]
        chunks = [np.concatenate([key, np.zeros((len(key), 1), np.float32)], axis=1)]
        for path, transform, lag in info["sweeps"]:
            sweep = read_lidar_bin(self.root / path)[:, :4].astype(np.float64)
            sweep = sweep[~((np.abs(sweep[:, 0]) < _EGO_RADIUS) & (np.abs(sweep[:, 1]) < _EGO_RADIUS))]
            sweep[:, :3] = sweep[:, :3] @ transform[:3, :3].T + transform[:3, 3]
            chunks.append(np.concatenate([sweep, np.full((len(sweep), 1), lag)], axis=1).astype(np.float32))
        return np.concatenate(chunks)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return self._item(int(epoch), int(index))

    def _item(self, epoch: int, index: int) -> dict[str, Any]:
        info = self.infos[index]
        points = self.load_points(index)
        keep = info["num_lidar_pts"] >= self.min_lidar_points
        boxes, names, velocity = info["boxes"][keep], info["names"][keep], info["velocity"][keep]
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
            if self.flip:
                points, boxes, flipped = random_flip_x(points, boxes, rng)
                if flipped:
                    velocity = velocity * np.array([1.0, -1.0])
                if rng.random() < 0.5:
                    points, boxes, velocity = _flip_y(points, boxes, velocity)
            if self.global_rotation is not None:
                angle = float(rng.uniform(*self.global_rotation))
                points, boxes = rotate_about_z(points, boxes, angle)
                velocity = _rotate_velocity(velocity, angle)
            if self.global_scaling is not None:
                scale = float(rng.uniform(*self.global_scaling))
                points, boxes = global_scaling(points, boxes, scale)
                velocity = velocity * scale
        else:
            rng = np.random.default_rng([self.seed, _EVAL_STREAM, index])

        keep = np.isin(names, self.classes)
        boxes, names, velocity = boxes[keep], names[keep], velocity[keep]
        points = points[points_in_range(points, self.point_cloud_range)]
        keep = boxes_in_range(boxes, self.point_cloud_range)
        boxes, names, velocity = boxes[keep], names[keep], velocity[keep]
        if self.num_points is not None:
            if len(points) == 0:
                raise ValueError(
                    f"{self.root / info['lidar_path']}: no points left in point_cloud_range "
                    f"{self.point_cloud_range.tolist()}"
                )
            points = sample_points(points, self.num_points, rng)
        elif self.train:
            points = points[rng.permutation(len(points))]

        angle = 0.0
        if not self.train and self.test_rotation == "random":
            stream = zlib.crc32(info["sample_token"].encode())
            angle = float(np.random.default_rng([self.seed, _ROTATION_STREAM, stream]).uniform(-math.pi, math.pi))
            points, boxes = rotate_about_z(points, boxes, angle)
            velocity = _rotate_velocity(velocity, angle)

        labels = np.array([self.classes.index(n) + 1 for n in names], dtype=np.int64)
        return {
            "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 7)),
            "labels": torch.from_numpy(labels),
            "velocity": torch.from_numpy(np.ascontiguousarray(velocity, dtype=np.float32).reshape(-1, 2)),
            "frame_id": info["sample_token"],
            "sample_token": info["sample_token"],
            "calib": {
                "lidar_to_ego": info["lidar_to_ego"],
                "ego_to_global": info["ego_to_global"],
                "timestamp": info["timestamp"],
            },
            "rotation": angle,
        }


class NuScenesDataModule(LiDARDataModule):
    """nuScenes 3D object detection from LiDAR (multi-sweep), with OpenPCDet's nuScenes training recipe.

    Args:
        root: Folder holding ``<version>/``, ``samples/``, ``sweeps/``, ``maps/``; ``None`` generates a synthetic
            tree (into ``synthetic_dir`` or a per-options cache folder).
        version: Table folder: ``v1.0-mini``, ``v1.0-trainval`` (or ``v1.0-test``, without annotations).
        train_split: Scene split to train on; ``None``: ``train`` (trainval), ``mini_train`` (mini) or
            ``synthetic_train`` (``root=None``).
        val_split: Scene split to validate on; ``None``: ``val``, ``mini_val`` or ``synthetic_val``.
        test_split: Split of the ``test`` stage; ``None``: the validation split.
        predict_split: Split of the ``predict`` stage; ``None``: the validation split.
        max_sweeps: LiDAR scans per sample including the keyframe (OpenPCDet / 3DSSD on nuScenes: 10).
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in metres; points and boxes outside its
            x-y extent are dropped.
        num_points: Points per sample after sampling / padding (point-based detectors, e.g. 16384); ``None``
            keeps all.
        classes: Detection classes; ``labels`` are 1-based indices in this order (default: the 10 classes in
            OpenPCDet's order).
        flip: Random flips along x and y in training.
        global_rotation: Training rotation range about z in radians (OpenPCDet nuScenes: +-0.3925), ``None`` to
            disable.
        global_scaling: Training scale range, ``None`` to disable.
        test_rotation: ``"random"``: evaluation samples rotated by a reproducible per-sample angle (returned in
            ``rotation``; rotate predictions back by ``-rotation``, or pass ``rotation`` to the metric's update).
        min_lidar_points: Drop annotations with fewer LiDAR points (OpenPCDet ``FILTER_MIN_POINTS_IN_GT``: 1).
        batch_size: Training batch size (per process).
        eval_batch_size: Evaluation batch size; ``None`` = ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: Seed of shuffling, augmentation, point sampling, test rotation and synthetic data.
        synthetic_dir: Where ``root=None`` writes its tree.
        synthetic_options: Keyword arguments for ``write_nuscenes`` (e.g. ``num_scenes``, ``azimuth_steps``).

    Raises:
        ValueError: An argument is out of range or names an unknown class.
    """

    synthetic_folder = "nuscenes"
    collate_fn = staticmethod(kitti_object_collate)

    def __init__(
        self,
        root: str | None = None,
        version: str = "v1.0-mini",
        train_split: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        predict_split: str | None = None,
        max_sweeps: int = 10,
        point_cloud_range: tuple[float, float, float, float, float, float] = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0),
        num_points: int | None = None,
        classes: tuple[str, ...] = DETECTION_CLASSES,
        flip: bool = True,
        global_rotation: tuple[float, float] | None = (-0.3925, 0.3925),
        global_scaling: tuple[float, float] | None = (0.95, 1.05),
        test_rotation: Literal["none", "random"] = "none",
        min_lidar_points: int = 1,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        seed: int = 0,
        synthetic_dir: str | None = None,
        synthetic_options: dict | None = None,
    ) -> None:
        super().__init__()
        classes = tuple(classes)
        unknown = [c for c in classes if c not in DETECTION_CLASSES]
        if not classes or len(set(classes)) != len(classes) or unknown:
            raise ValueError(
                f"`classes` must be distinct nuScenes detection classes {list(DETECTION_CLASSES)}, got {classes!r}"
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
                "max_sweeps": (max_sweeps, 1),
                "batch_size": (batch_size, 1),
                "num_workers": (num_workers, 0),
                "min_lidar_points": (min_lidar_points, 0),
                "seed": (seed, 0),
            },
        )
        if not isinstance(version, str) or not version:
            raise ValueError(f"`version` must be a table folder name such as 'v1.0-mini', got {version!r}")
        self.save_hyperparameters()
        self.root = root
        self.version = version
        if root is None:
            default_train, default_val = SYNTHETIC_TRAIN_SPLIT, SYNTHETIC_VAL_SPLIT
        elif version.endswith("mini"):
            default_train, default_val = "mini_train", "mini_val"
        else:
            default_train, default_val = "train", "val"
        val = val_split or default_val
        self.splits = {
            "train": train_split or default_train,
            "val": val,
            "test": test_split or val,
            "predict": predict_split or val,
        }
        self.max_sweeps = max_sweeps
        self.point_cloud_range = np.array(pcr, dtype=np.float64)
        self.num_points = num_points
        self.classes = classes
        self.flip = flip
        self.global_rotation = (
            None if global_rotation is None else (float(global_rotation[0]), float(global_rotation[1]))
        )
        self.global_scaling = None if global_scaling is None else (float(global_scaling[0]), float(global_scaling[1]))
        self.test_rotation = test_rotation
        self.min_lidar_points = min_lidar_points
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.synthetic_dir = synthetic_dir
        self.synthetic_options = dict(synthetic_options or {})
        self.datasets: dict[str, NuScenesDataset] = {}
        self._nusc: Any = None

    # -------------------------------------------------------------------------------------------- data location
    def resolved_synthetic_options(self) -> dict[str, Any]:
        """Writer options for ``root=None``: ``{"seed": seed, "version": version}`` updated by ``synthetic_options``."""
        return {"seed": self.seed, "version": self.version, **self.synthetic_options}

    @property
    def nusc(self) -> Any:
        """The devkit's ``NuScenes`` object of ``data_root`` / ``version`` (loaded once, on first use)."""
        if self._nusc is None:
            self._nusc = load_nuscenes(self.data_root, self.version)
        return self._nusc

    # ----------------------------------------------------------------------------------------------- life cycle
    def write_synthetic_tree(self, folder: Path) -> None:
        write_nuscenes(folder, **self.resolved_synthetic_options())

    @override
    def setup(self, stage: str) -> None:
        """Load the tables (once) and build the datasets of ``stage`` (fit: train + val).

        Raises:
            ValueError: Unknown ``stage`` or split.
            FileNotFoundError: The root, a table or a scan of the split is missing (the message lists what was
                looked for), or ``root=None`` and ``prepare_data`` has not run.
            NuScenesFormatError: A table or scan is malformed.
        """
        splits = self._check_stage(stage)
        for split in splits:
            self.datasets[split] = self.build_dataset(split)

    def build_dataset(self, split: str) -> NuScenesDataset:
        """Resolve ``split`` (``train``/``val``/``test``/``predict``) to scenes, check its scans, wrap it."""
        split_name = self.splits[split]
        scenes = scenes_of_split(self.nusc, split_name)
        infos = nuscenes_frame_infos(self.nusc, scenes, self.max_sweeps)
        if not infos:
            raise ValueError(f"split {split_name!r} of {self.version} under {self.data_root} has no samples")
        root = self.data_root
        missing = [
            root / path
            for info in infos
            for path in [info["lidar_path"], *(s[0] for s in info["sweeps"])]
            if not (root / path).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} LiDAR scans of the {split_name!r} split are missing under {root}, e.g. {missing[0]}; "
                f"expected layout: {NUSCENES_LAYOUT}"
            )
        train = split == "train"
        return NuScenesDataset(
            root,
            infos,
            classes=self.classes,
            point_cloud_range=self.point_cloud_range,
            num_points=self.num_points,
            train=train,
            flip=self.flip and train,
            global_rotation=self.global_rotation if train else None,
            global_scaling=self.global_scaling if train else None,
            test_rotation=self.test_rotation,
            min_lidar_points=self.min_lidar_points,
            seed=self.seed,
        )

    def detection_metric(self, **kwargs: Any):
        """A :class:`~lightning_hpml.metrics.nuscenes_detection.NuScenesDetectionMetric` for this data (sharing the
        loaded tables and ``classes``); ``kwargs`` go to the metric."""
        from lightning_hpml.metrics.nuscenes_detection import NuScenesDetectionMetric

        kwargs.setdefault("classes", self.classes)
        return NuScenesDetectionMetric(dataroot=str(self.data_root), version=self.version, nusc=self.nusc, **kwargs)
