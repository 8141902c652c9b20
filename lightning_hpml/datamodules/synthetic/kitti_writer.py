"""Write a synthetic KITTI 2012 or 2015 stereo tree in the benchmark's real on-disk layout.

The KITTI loaders must read this tree exactly as they read the real download, so folder and file names, image
formats and the 16-bit disparity PNG encoding (``value = round(d * 256)``, 0 = no ground truth) are those of the
benchmark (Geiger et al., CVPR 2012; Menze and Geiger, CVPR 2015)::

    KITTI 2015                                        KITTI 2012
    <root>/training/image_2/NNNNNN_{10,11}.png        <root>/training/colored_0/NNNNNN_{10,11}.png   (left)
    <root>/training/image_3/NNNNNN_{10,11}.png        <root>/training/colored_1/NNNNNN_{10,11}.png   (right)
    <root>/training/disp_occ_0/NNNNNN_10.png          <root>/training/disp_occ/NNNNNN_10.png
    <root>/training/disp_noc_0/NNNNNN_10.png          <root>/training/disp_noc/NNNNNN_10.png
    <root>/training/obj_map/NNNNNN_10.png             -
    <root>/testing/image_{2,3}/NNNNNN_{10,11}.png     <root>/testing/colored_{0,1}/NNNNNN_{10,11}.png
    <root>/SYNTHETIC_README.txt

The default counts are the real ones (2015: 200 training and 200 testing pairs; 2012: 194 and 195), so the official
and FADNet splits, which name frame indices, work unchanged.

Ground truth is sparse, like KITTI's LiDAR-based one: ``disp_occ`` is valid on a random ~1/3 of the pixels, none
in the top ~third of the image (where the real LiDAR sees nothing) and denser towards the bottom; ``disp_noc`` is
``disp_occ`` without the pixels that are occluded in the right view (including those that leave the right image).
``obj_map`` (2015) is an 8-bit map, 0 for background and ``k`` for the k-th foreground object, over the whole image.
The ``_11`` frames show the same scene with the objects moved a few pixels, like the next video frame; no
ground truth is written for them (the real ``disp_*_1`` folders hold scene-flow data, which is not imitated here).
The two cameras get slightly different colour gains (``photometric_jitter``), as real cameras do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from lightning_hpml.datamodules.formats import write_kitti_disparity, write_rgb
from lightning_hpml.datamodules.synthetic.output_tree import (
    disparity_range,
    item_rng,
    positive_int,
    prepare_output_root,
    validate_seed,
    write_synthetic_readme,
)
from lightning_hpml.datamodules.synthetic.random_scene import (
    default_max_disparity,
    random_scene,
)
from lightning_hpml.datamodules.synthetic.scene_geometry import StereoRig, StereoScene
from lightning_hpml.datamodules.synthetic.stereo_scene import render_scene

__all__ = ["KITTI_LAYOUT", "KITTI_REAL_COUNTS", "lidar_like_mask", "write_kitti_stereo"]

KITTI_LAYOUT: dict[int, dict[str, str | None]] = {
    2015: {"left": "image_2", "right": "image_3", "occ": "disp_occ_0", "noc": "disp_noc_0", "obj": "obj_map"},
    2012: {"left": "colored_0", "right": "colored_1", "occ": "disp_occ", "noc": "disp_noc", "obj": None},
}
"""Folder names per year (``obj``: the foreground-object map, 2015 only)."""
KITTI_REAL_COUNTS: dict[int, tuple[int, int]] = {2015: (200, 200), 2012: (194, 195)}
"""``(training, testing)`` pairs of the real benchmark."""

_GT_TOP_FRACTION = (0.30, 0.36)
"""Range of the fraction of rows, from the top, without ground truth."""
_GT_DENSITY = (0.35, 0.65)
"""Probability of a ground-truth pixel at the first row with ground truth and at the bottom row."""
_NEXT_FRAME_SHIFT_PX = (4.0, 1.0)
"""Largest horizontal and vertical image motion (pixels) of an object between the _10 and _11 frames."""


def lidar_like_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random sparse validity mask like KITTI's LiDAR ground truth: empty top rows, denser towards the bottom.

    The top 30-36 % of the rows get nothing; below, a pixel is valid with a probability rising linearly from 0.35
    to 0.65, so about a third of the image is valid.

    Returns:
        bool ``(height, width)``.
    """
    top = round(height * float(rng.uniform(*_GT_TOP_FRACTION)))
    rows = np.arange(height, dtype=np.float64)
    ramp = (rows - top) / max(1, height - 1 - top)
    probability = np.where(rows < top, 0.0, _GT_DENSITY[0] + (_GT_DENSITY[1] - _GT_DENSITY[0]) * ramp)
    return rng.random((height, width)) < probability[:, None]


def _next_frame(scene: StereoScene, rig: StereoRig, rng: np.random.Generator) -> StereoScene:
    """The scene with every object moved parallel to the image plane (depths, hence disparity bounds, kept)."""
    offsets = {}
    for object_id in range(1, scene.num_objects + 1):
        z = min(p.corners()[:, 2].min() for p in scene.patches if p.object_id == object_id)
        shift_px = rng.uniform(-1.0, 1.0, size=2) * np.array(_NEXT_FRAME_SHIFT_PX)
        offsets[object_id] = np.array([shift_px[0], shift_px[1], 0.0]) * z / rig.focal
    return scene.with_objects_moved(offsets)


def _write_grey_png(path: Path, array: np.ndarray) -> None:
    """8-bit single-channel PNG (KITTI ``obj_map``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path)


def write_kitti_stereo(
    root: str | os.PathLike[str],
    *,
    year: Literal[2012, 2015] = 2015,
    num_train: int | None = None,
    num_test: int | None = None,
    height: int = 96,
    width: int = 312,
    max_disparity: float | None = None,
    min_disparity: float | None = None,
    seed: int = 0,
    photometric_jitter: float = 0.02,
    anti_alias: int = 2,
    overwrite: bool = False,
) -> Path:
    """Render and write a synthetic KITTI stereo tree (layout in the module docstring).

    Args:
        root: Destination folder; must be empty or absent (see ``overwrite``).
        year: 2015 or 2012 (folder names differ; 2015 adds ``obj_map``).
        num_train: Training pairs; ``None`` = the real count (200 for 2015, 194 for 2012).
        num_test: Testing pairs; ``None`` = the real count (200 for 2015, 195 for 2012).
        height: Image height in pixels (the real images: about 375).
        width: Image width in pixels (the real images: about 1242).
        max_disparity: Largest disparity in pixels, below 256 (the PNG encoding's limit); default
            :func:`~.random_scene.default_max_disparity` of the width.
        min_disparity: Smallest disparity; default ``max(0.5, max_disparity / 20)``.
        seed: Seed of the whole tree.
        photometric_jitter: Per-camera colour gain/offset amplitude.
        anti_alias: Sub-pixel rays per axis for the image colours.
        overwrite: Replace a synthetic tree already in ``root`` (never a folder without our README).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: Unknown year, non-positive counts or sizes, a disparity range outside ``(0, min(width, 256))``,
            or a negative seed.
        FileExistsError: ``root`` is not empty (see :func:`~.output_tree.prepare_output_root`).
    """
    if year not in KITTI_LAYOUT:
        raise ValueError(f"`year` must be 2012 or 2015, got {year!r}")
    real_train, real_test = KITTI_REAL_COUNTS[year]
    num_train = real_train if num_train is None else num_train
    num_test = real_test if num_test is None else num_test
    for name, value in (("num_train", num_train), ("num_test", num_test), ("height", height), ("width", width)):
        positive_int(name, value)
    if num_train > 999999 or num_test > 999999:
        raise ValueError(f"KITTI names frames with 6 digits; got num_train={num_train}, num_test={num_test}")
    max_disparity, min_disparity = disparity_range(
        max_disparity,
        min_disparity,
        default_max=default_max_disparity(width),
        limit=min(float(width), 255.0),
        why=" (image width and the 16-bit PNG limit)",
    )
    seed = validate_seed(seed)
    folders = KITTI_LAYOUT[year]
    rig = StereoRig(height=int(height), width=int(width), focal=float(width), baseline=1.0)
    out = prepare_output_root(root, overwrite=overwrite)

    for part, count in (("training", int(num_train)), ("testing", int(num_test))):
        for index in range(count):
            rng = item_rng(seed, f"kitti{year}/{part}/{index:06d}")
            scene = random_scene(rig, rng, min_disparity=min_disparity, max_disparity=float(max_disparity))
            first = render_scene(scene, rig, anti_alias=anti_alias, photometric_jitter=photometric_jitter, rng=rng)
            second = render_scene(
                _next_frame(scene, rig, rng), rig, anti_alias=anti_alias, photometric_jitter=photometric_jitter, rng=rng
            )
            base = out / part
            for suffix, render in (("10", first), ("11", second)):
                write_rgb(base / folders["left"] / f"{index:06d}_{suffix}.png", render.left)
                write_rgb(base / folders["right"] / f"{index:06d}_{suffix}.png", render.right)
            if part == "training":
                valid = lidar_like_mask(rng, rig.height, rig.width)
                name = f"{index:06d}_10.png"
                write_kitti_disparity(base / folders["occ"] / name, first.disparity_left, valid)
                write_kitti_disparity(base / folders["noc"] / name, first.disparity_left, valid & ~first.occlusion_left)
                if folders["obj"] is not None:
                    _write_grey_png(base / folders["obj"] / name, first.object_index_left)

    write_synthetic_readme(
        out,
        generator="lightning_hpml.datamodules.synthetic.write_kitti_stereo",
        description=f"KITTI {year} stereo benchmark (training/ with sparse disparity ground truth, testing/)",
        parameters={
            "year": year,
            "num_train": int(num_train),
            "num_test": int(num_test),
            "height": int(height),
            "width": int(width),
            "max_disparity": max_disparity,
            "min_disparity": min_disparity,
            "seed": seed,
            "photometric_jitter": photometric_jitter,
            "anti_alias": anti_alias,
            "focal_px": rig.focal,
            "baseline": rig.baseline,
        },
    )
    return out
