"""IRS stereo DataModule: indoor stereo pairs with EXR disparity and surface normals, read as distributed.

Dataset: Wang, Zheng, Yan, Chu, Shi, "IRS: A Large Naturalistic Indoor Robotics Stereo Dataset to Train Deep Models
for Disparity and Surface Normal Estimation", arXiv:1912.09678 (ICME 2021); https://github.com/HKBU-HPML/IRS.
103,316 rendered (UE4) pairs of 540 x 960, focal length ``fx = fy = 480`` px, baseline 0.1 m (depth = 48 / d).
Layout under ``root`` (the ``IRSDataset`` folder)::

    {Home,Office,Restaurant,Store}/<Scene>/l_<id>.png   left RGB      r_<id>.png   right RGB
    {Home,Office,Restaurant,Store}/<Scene>/d_<id>.exr   left disparity (float32, one channel named ``G``)
    {Home,Office,Restaurant,Store}/<Scene>/n_<id>.exr   left surface normal, stored as ``(n + 1) / 2`` (R, G, B)

Splits come from list files, one sample per line ``left right disp normal`` (a v1 line may have only the first
three columns: no normal), paths relative to ``root``. Both published styles are read: the current lists
(``lists/irs_train.list``, ``lists/irs_test.list``; ``Home/ArchVizInterior03Data/l_00001.png``, 5-digit ids) and the
v1 lists (``lists/v1/IRS_TEST.list``; ``IRSDataset/Home/RoyalRoom/l_321.png``: the ``IRSDataset/`` prefix is dropped
when ``root`` is the ``IRSDataset`` folder itself). ``train_list`` gives the training split, ``test_list`` the
val/test/predict split; by default ``lists/irs_train.list`` and ``lists/irs_test.list`` under ``root``.

Batches: the stereo keys of :mod:`~lightning_hpml.datamodules.stereo.dataset` plus, for samples with a normal file,
``normal`` (B, 3, H, W float32, 0 where invalid) and ``normal_valid`` (B, 1, H, W bool: all three decoded components
finite and in [-1, 1] and the vector not zero - the official per-component test ``-1 <= n <= 1``, per pixel).

**Normal convention** (decided here; the official code is inconsistent: ``IRSLoader`` negates the ``z`` component
wherever ``z >= 0`` - a reflection, not a flip - while the trainer's loader for ``dataset=irs`` keeps the decoded
values): normals are unit vectors in the left camera frame, ``x`` right, ``y`` down, ``z`` forward (the frame
``disp2norm`` assumes), pointing towards the camera, i.e. ``n . r < 0`` for the viewing ray
``r = ((u - cx) / f, (v - cy) / f, 1)`` of the pixel. The loader decodes ``n = 2 v - 1`` and flips (negates the whole
vector) every normal with ``n . r > 0``. For surfaces seen roughly head-on this is the same as ``n_z < 0``; only
surfaces seen at grazing angles near the image border may have ``n_z > 0`` and still face the camera. The synthetic
writer and :func:`~lightning_hpml.modules.stereo.normnet.disp2norm` use the same convention.

Predictions (disparity only) are written as PFM (``disparity_format = "pfm"``) under the sample name, the left
image path without suffix, e.g. ``Home/ArchVizInterior03Data/l_00001``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from typing_extensions import override

from lightning_hpml.datamodules.formats import read_exr
from lightning_hpml.datamodules.stereo.base import Split, StereoDataModule, synthetic_image_size
from lightning_hpml.datamodules.stereo.dataset import StereoDataset, Transform
from lightning_hpml.datamodules.stereo.samples import StereoSample, check_samples_exist, default_sample_name
from lightning_hpml.datamodules.stereo.transforms import StereoTrainTransform
from lightning_hpml.datamodules.synthetic.irs_writer import (
    IRS_BASELINE,
    IRS_FOCAL,
    IRS_TEST_LIST,
    IRS_TRAIN_LIST,
    write_irs,
)

__all__ = [
    "IRS_BASELINE",
    "IRS_FOCAL",
    "IRSDataModule",
    "IRSDataset",
    "decode_irs_normal",
    "orient_normals_to_camera",
    "read_irs_list",
    "read_irs_normal",
]

_V1_PREFIX = "IRSDataset"
_NORMAL_TOLERANCE = 1e-6
"""Slack on the [-1, 1] component test: ``2 v - 1`` of a stored 1.0 may round just past 1 in float32."""


def decode_irs_normal(encoded: np.ndarray) -> np.ndarray:
    """Decode IRS's stored normal ``v = (n + 1) / 2`` to ``n = 2 v - 1`` (float32, same shape)."""
    return (np.asarray(encoded, np.float32) * np.float32(2.0) - np.float32(1.0)).astype(np.float32)


def orient_normals_to_camera(normal: np.ndarray, focal: float, cx: float | None = None, cy: float | None = None):
    """Flip every normal of an ``(H, W, 3)`` camera-frame map that points away from the camera (``n . r > 0``).

    Args:
        normal: Normals in the camera frame (``x`` right, ``y`` down, ``z`` forward).
        focal: Focal length in pixels.
        cx: Principal point column; default the image centre ``(W - 1) / 2``.
        cy: Principal point row; default ``(H - 1) / 2``.

    Returns:
        A new float32 array with ``n . r <= 0`` everywhere (non-finite entries are left as they are).
    """
    h, w = normal.shape[:2]
    cx = (w - 1) / 2.0 if cx is None else cx
    cy = (h - 1) / 2.0 if cy is None else cy
    rx = ((np.arange(w, dtype=np.float32) - cx) / focal)[None, :]
    ry = ((np.arange(h, dtype=np.float32) - cy) / focal)[:, None]
    dot = normal[..., 0] * rx + normal[..., 1] * ry + normal[..., 2]
    with np.errstate(invalid="ignore"):
        away = dot > 0
    return np.where(away[..., None], -normal, normal).astype(np.float32)


def read_irs_normal(path: str | Path, focal: float = IRS_FOCAL) -> tuple[np.ndarray, np.ndarray]:
    """Read an IRS ``n_<id>.exr`` file: decoded, camera-facing normals and their validity.

    Returns:
        ``(normal, valid)``: float32 ``(H, W, 3)`` (0 where invalid) and bool ``(H, W)``.

    Raises:
        FileNotFoundError: The file is missing.
        EXRFormatError: Not an EXR file, or not an R, G, B one.
    """
    normal = orient_normals_to_camera(decode_irs_normal(read_exr(path)), focal)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(normal).all(axis=-1) & (np.abs(normal) <= 1.0 + _NORMAL_TOLERANCE).all(axis=-1)
        valid &= np.einsum("hwc,hwc->hw", normal, normal) > 1e-6
    return np.where(valid[..., None], normal, np.float32(0.0)).astype(np.float32), valid


def _strip_v1_prefix(entry: str) -> str:
    parts = PurePosixPath(entry.replace("\\", "/")).parts
    if parts and parts[0] == _V1_PREFIX:
        return "/".join(parts[1:])
    return entry


def read_irs_list(path: str | Path, root: str | Path) -> tuple[list[StereoSample], list[Path | None]]:
    """Read an IRS list file (``left right disp [normal]`` per line) into samples and their normal files.

    Lines of 3 fields have no normal (``None``); a ``#`` line or a blank line is skipped. A v1 ``IRSDataset/`` prefix
    is dropped unless ``root`` holds an ``IRSDataset`` folder. Sample names are the left paths without suffix.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line does not have 3 or 4 fields, or the file holds no sample; the message names the line.
    """
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise FileNotFoundError(f"IRS list file {path} does not exist")
    samples: list[StereoSample] = []
    normals: list[Path | None] = []
    strip = not (root / _V1_PREFIX).is_dir()  # root is the IRSDataset folder itself
    with path.open("r", encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = [_strip_v1_prefix(f) for f in line.split()] if strip else line.split()
            if len(fields) not in (3, 4):
                raise ValueError(
                    f"{path}:{line_no}: expected 'left right disparity normal' (4 paths, or 3 without normal), "
                    f"found {len(fields)} field(s): {line!r}"
                )
            samples.append(
                StereoSample(
                    left=root / fields[0],
                    right=root / fields[1],
                    disparity=root / fields[2],
                    name=default_sample_name(fields[0]),
                )
            )
            normals.append(root / fields[3] if len(fields) == 4 else None)
    if not samples:
        raise ValueError(f"IRS list file {path} holds no sample (expected lines 'left right disparity normal')")
    return samples, normals


class IRSDataset(StereoDataset):
    """:class:`StereoDataset` that also reads each sample's normal file into ``normal`` / ``normal_valid``.

    Args:
        samples: The stereo samples.
        normals: One normal file per sample; all ``None`` (no normal keys) or all given.
        transform: Applied to the item dict (:class:`StereoTrainTransform` crops ``normal``/``normal_valid``
            with the same window as the images).
        max_disp: Disparities at or above this are marked invalid.
        seed: Base seed for ``(epoch, index)`` keys.
        focal: Focal length used to orient the normals towards the camera.

    Raises:
        ValueError: ``normals`` does not match ``samples`` in length or mixes files and ``None``.
    """

    def __init__(
        self,
        samples: Sequence[StereoSample],
        normals: Sequence[Path | None],
        transform: Transform | None = None,
        max_disp: float | None = None,
        seed: int = 0,
        focal: float = IRS_FOCAL,
    ) -> None:
        super().__init__(samples, transform=transform, max_disp=max_disp, seed=seed)
        normals = list(normals)
        if len(normals) != len(self.samples):
            raise ValueError(f"{len(self.samples)} samples but {len(normals)} normal entries")
        if len({n is None for n in normals}) > 1:
            raise ValueError(
                "IRS samples must all have a normal file or all have none (a batch cannot mix them); got "
                f"{sum(n is None for n in normals)} of {len(normals)} without"
            )
        self.normals = normals
        self.focal = focal

    @override
    def load(self, index: int) -> dict[str, Any]:
        item = super().load(index)
        path = self.normals[index]
        if path is None:
            return item
        normal, valid = read_irs_normal(path, self.focal)
        if normal.shape[:2] != tuple(item["left"].shape[-2:]):
            raise ValueError(
                f"{path}: normal map is {normal.shape[1]}x{normal.shape[0]} (WxH) but the left image "
                f"{self.samples[index].left} is {item['left'].shape[-1]}x{item['left'].shape[-2]}"
            )
        item["normal"] = torch.from_numpy(np.ascontiguousarray(normal.transpose(2, 0, 1)))
        item["normal_valid"] = torch.from_numpy(valid)[None]
        return item


class IRSDataModule(StereoDataModule):
    """IRS stereo pairs with disparity and surface normals, split by the published list files.

    Args:
        root: The ``IRSDataset`` folder; ``None`` generates a small synthetic IRS tree (with lists).
        batch_size: Training batch size per process (official: 16 in total).
        eval_batch_size: Validation/test/predict batch size.
        num_workers: DataLoader worker processes.
        crop_size: ``(height, width)`` of the training crop (official: 384 x 768).
        max_disp: Disparities at or above this are invalid (official EPE: ``gt < 192``); ``None``: no limit.
        augment: FADNet's colour augmentation on training pairs.
        synthetic_dir: Where ``root=None`` writes the synthetic tree.
        synthetic_options: Overrides for :func:`~lightning_hpml.datamodules.synthetic.write_irs`.
        seed: Seed of shuffle, augmentation and synthetic data.
        train_list: List file of the training split: a path, or relative to ``root``.
        test_list: List file of the val/test/predict split.
        focal: Focal length in pixels (IRS: 480), used to orient normals towards the camera.
    """

    disparity_format: ClassVar[Literal["pfm", "kitti_png"]] = "pfm"
    dataset_name: ClassVar[str] = "irs"
    expected_layout: ClassVar[str] = (
        "<root>/{Home,Office,Restaurant,Store}/<Scene>/{l_<id>.png, r_<id>.png, d_<id>.exr, n_<id>.exr} with the "
        "list files naming them relative to <root> (e.g. lists/irs_train.list, lists/irs_test.list)"
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
        train_list: str = IRS_TRAIN_LIST,
        test_list: str = IRS_TEST_LIST,
        focal: float = IRS_FOCAL,
    ) -> None:
        if not (isinstance(focal, (int, float)) and math.isfinite(focal) and focal > 0):
            raise ValueError(f"`focal` must be a positive number of pixels, got {focal!r}")
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
        self.train_list = train_list
        self.test_list = test_list
        self.focal = float(focal)

    def _list_path(self, given: str) -> Path:
        path = Path(given).expanduser()
        if path.is_absolute() and path.is_file():
            return path
        in_root = self.data_root / given
        if in_root.is_file():
            return in_root
        if path.is_file():
            return path
        raise FileNotFoundError(
            f"IRS list file {given!r} not found: looked for {in_root} and {path.absolute()}; pass train_list/"
            "test_list (the published lists are in https://github.com/HKBU-HPML/IRS/tree/master/lists)"
        )

    def parse_with_normals(self, split: Split) -> tuple[list[StereoSample], list[Path | None]]:
        """Samples of ``split`` and their normal files (``None`` for 3-column list lines)."""
        root = self.data_root
        if not root.is_dir():
            raise FileNotFoundError(f"IRS root {root} does not exist; expected layout: {self.expected_layout}")
        if split == "train":
            return read_irs_list(self._list_path(self.train_list), root)
        if split in ("val", "test", "predict"):
            return read_irs_list(self._list_path(self.test_list), root)
        raise ValueError(f"`split` must be 'train', 'val', 'test' or 'predict', got {split!r}")

    @override
    def parse(self, split: Split) -> list[StereoSample]:
        return self.parse_with_normals(split)[0]

    @override
    def build_dataset(self, split: Split) -> IRSDataset:
        samples, normals = self.parse_with_normals(split)
        check_samples_exist(samples, self.expected_layout, where=self.data_root)
        missing = [p for p in normals if p is not None and not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(normals)} normal files are missing under {self.data_root}, e.g. "
                f"{missing[0]}; expected layout: {self.expected_layout}"
            )
        transform = StereoTrainTransform(self.crop_size, color=self.augment) if split == "train" else None
        return IRSDataset(
            samples, normals, transform=transform, max_disp=self.max_disp, seed=self.seed, focal=self.focal
        )

    # ------------------------------------------------------------------------------------------------ synthetic
    @override
    def synthetic_defaults(self) -> dict[str, Any]:
        height, width = synthetic_image_size(self.crop_size)
        return {"height": height, "width": width, "seed": self.seed, "focal": self.focal}

    @override
    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_irs(root, **options)
