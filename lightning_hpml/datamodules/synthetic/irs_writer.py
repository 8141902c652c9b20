"""Write a small synthetic IRS tree (indoor stereo with disparity and surface normals) in the real on-disk layout.

IRS (Wang et al., "IRS: A Large Naturalistic Indoor Robotics Stereo Dataset to Train Deep Models for Disparity and
Surface Normal Estimation", arXiv:1912.09678; https://github.com/HKBU-HPML/IRS) is distributed as::

    <root>/{Home,Office,Restaurant,Store}/<Scene>/l_<id>.png    left RGB
    <root>/{Home,Office,Restaurant,Store}/<Scene>/r_<id>.png    right RGB
    <root>/{Home,Office,Restaurant,Store}/<Scene>/d_<id>.exr    left disparity, float32, one channel named ``G``
    <root>/{Home,Office,Restaurant,Store}/<Scene>/n_<id>.exr    left surface normal stored as (n + 1) / 2, R, G, B
    <root>/lists/irs_train.list, <root>/lists/irs_test.list     ``left right disp normal`` per line, ids 5-digit

This writer produces exactly that, smaller, with scene folder names taken from the real set. Pairs are ray cast
from planar geometry (:mod:`.stereo_scene`) by a rig with IRS's intrinsics (focal length 480 px, baseline 0.1 m,
principal point at the image centre), so disparity is exact and so are the normals: the normal of the plane each
left pixel-centre ray hits, in the left camera frame (``x`` right, ``y`` down, ``z`` forward), oriented towards the
camera (``n . ray < 0``) - the package's IRS convention, see :mod:`lightning_hpml.datamodules.stereo.irs`.

The single-channel ``G`` disparity file is written with OpenCV (which names a single channel ``Y``) and the channel
renamed in the header; for a one-channel file the name occurs only there, so the result is a valid EXR file like
IRS's own. Every frame is rendered from a seed derived from ``(seed, path of the frame)``.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import cv2
import numpy as np

from lightning_hpml.datamodules.formats import write_exr, write_rgb
from lightning_hpml.datamodules.synthetic.output_tree import (
    disparity_range,
    item_rng,
    positive_int,
    prepare_output_root,
    validate_seed,
    write_synthetic_readme,
)
from lightning_hpml.datamodules.synthetic.random_scene import random_scene
from lightning_hpml.datamodules.synthetic.scene_geometry import StereoRig
from lightning_hpml.datamodules.synthetic.stereo_scene import StereoRender, render_scene

__all__ = [
    "IRS_BASELINE",
    "IRS_CATEGORIES",
    "IRS_FOCAL",
    "IRS_TEST_LIST",
    "IRS_TRAIN_LIST",
    "encode_irs_normal",
    "render_irs_frame",
    "write_g_channel_exr",
    "write_irs",
]

IRS_FOCAL = 480.0
"""Focal length ``fx = fy`` of the IRS cameras in pixels (at 540 x 960)."""
IRS_BASELINE = 0.1
"""Stereo baseline of the IRS rig in metres (so depth = 48 / disparity)."""
IRS_CATEGORIES = ("Home", "Office", "Restaurant", "Store")
"""Top-level folders of the distribution."""
IRS_TRAIN_LIST = "lists/irs_train.list"
"""Training list, relative to the root (the name published in the IRS repository's ``lists/``)."""
IRS_TEST_LIST = "lists/irs_test.list"
"""Test list, relative to the root."""

_SCENES = {
    "Home": ("ArchVizInterior03Data", "RoyalRoom_Dark"),
    "Office": ("OfficeKIT", "ModernModularOffice_BL2"),
    "Restaurant": ("DinerEnvironment_Dark", "SCLRestaurant001_NightFall"),
    "Store": ("ConvenienceStore", "Supermarket_Dark"),
}


def encode_irs_normal(normal: np.ndarray) -> np.ndarray:
    """Encode unit normals ``(H, W, 3)`` in [-1, 1] as IRS stores them: ``(n + 1) / 2`` in [0, 1], float32."""
    return ((np.asarray(normal, np.float64) + 1.0) * 0.5).astype(np.float32)


def write_g_channel_exr(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a float ``(H, W)`` map as a one-channel FLOAT EXR whose channel is named ``G``, as IRS's files are.

    Raises:
        ValueError: ``array`` is not a 2-D floating-point array.
        OSError: The file could not be written or OpenCV's header did not have the expected single ``Y`` channel.
    """
    values = np.asarray(array)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"`array` must be a floating-point (H, W) map, got {values.dtype} {values.shape}")
    p = Path(path)
    write_exr(p, values.astype(np.float32))
    entry = b"channels\0chlist\0" + struct.pack("<i", 19) + b"Y\0"
    content = p.read_bytes()
    if content.count(entry) != 1:
        raise OSError(f"{p}: unexpected EXR header from OpenCV {cv2.__version__}; cannot rename its channel to 'G'")
    p.write_bytes(content.replace(entry, entry[:-2] + b"G\0"))


def render_irs_frame(
    height: int,
    width: int,
    *,
    max_disparity: float,
    min_disparity: float,
    seed: int | np.random.Generator,
    anti_alias: int = 2,
    focal: float = IRS_FOCAL,
) -> StereoRender:
    """Render one random indoor-like frame with IRS's rig (baseline 0.1) and exact left normals."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rig = StereoRig(height=height, width=width, focal=float(focal), baseline=IRS_BASELINE)
    scene = random_scene(rig, rng, min_disparity=float(min_disparity), max_disparity=float(max_disparity))
    return render_scene(scene, rig, anti_alias=anti_alias, with_normals=True)


def write_irs(
    root: str | os.PathLike[str],
    *,
    scenes_per_category: int = 1,
    frames_per_scene: int = 2,
    test_every: int = 4,
    height: int = 128,
    width: int = 256,
    max_disparity: float | None = None,
    min_disparity: float | None = None,
    focal: float = IRS_FOCAL,
    seed: int = 0,
    anti_alias: int = 2,
    overwrite: bool = False,
) -> Path:
    """Render and write a synthetic IRS tree (layout in the module docstring).

    Args:
        root: Destination folder; must be empty or absent (see ``overwrite``).
        scenes_per_category: Scene folders per category (at most 2; names from the real set).
        frames_per_scene: Frames per scene, ids ``00001, 00002, ...``.
        test_every: Every ``test_every``-th frame (1-based, over the whole tree) goes to the test list, the rest to
            the training list; the test list always gets at least one frame.
        height: Image height (the real set: 540).
        width: Image width (the real set: 960).
        max_disparity: Largest disparity in pixels; default ``width / 6``.
        min_disparity: Smallest disparity; default ``max(0.5, max_disparity / 20)``.
        focal: Focal length in pixels (IRS: 480). The normals are exact for this focal length.
        seed: Seed of the whole tree.
        anti_alias: Sub-pixel rays per axis for the image colours.
        overwrite: Replace a synthetic tree already in ``root`` (never a folder without our README).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: A non-positive count or size, too many scenes, a bad disparity range, or a negative seed.
        FileExistsError: ``root`` is not empty (see :func:`~.output_tree.prepare_output_root`).
    """
    scenes_per_category = positive_int("scenes_per_category", scenes_per_category)
    if scenes_per_category > 2:
        raise ValueError(f"`scenes_per_category` must be at most 2, got {scenes_per_category!r}")
    frames = positive_int("frames_per_scene", frames_per_scene)
    test_every = positive_int("test_every", test_every)
    height = positive_int("height", height)
    width = positive_int("width", width)
    if not (isinstance(focal, (int, float)) and math.isfinite(focal) and focal > 0):
        raise ValueError(f"`focal` must be a positive number of pixels, got {focal!r}")
    max_disparity, min_disparity = disparity_range(
        max_disparity, min_disparity, default_max=width / 6.0, limit=width, why=" (image width)"
    )
    seed = validate_seed(seed)
    out = prepare_output_root(root, overwrite=overwrite)

    lines: list[str] = []
    for category in IRS_CATEGORIES:
        for scene in _SCENES[category][:scenes_per_category]:
            for i in range(1, frames + 1):
                folder = f"{category}/{scene}"
                render = render_irs_frame(
                    height,
                    width,
                    max_disparity=float(max_disparity),
                    min_disparity=min_disparity,
                    seed=item_rng(seed, f"{folder}/{i:05d}"),
                    anti_alias=anti_alias,
                    focal=float(focal),
                )
                names = [f"{folder}/{prefix}_{i:05d}.{ext}" for prefix, ext in (("l", "png"), ("r", "png"))]
                names += [f"{folder}/d_{i:05d}.exr", f"{folder}/n_{i:05d}.exr"]
                write_rgb(out / names[0], render.left)
                write_rgb(out / names[1], render.right)
                write_g_channel_exr(out / names[2], render.disparity_left)
                write_exr(out / names[3], encode_irs_normal(render.normal_left))
                lines.append(" ".join(names))
    test = [line for k, line in enumerate(lines, start=1) if k % test_every == 0] or lines[-1:]
    train = [line for line in lines if line not in test]
    (out / "lists").mkdir(exist_ok=True)
    (out / IRS_TRAIN_LIST).write_text("".join(f"{line}\n" for line in train), encoding="utf-8")
    (out / IRS_TEST_LIST).write_text("".join(f"{line}\n" for line in test), encoding="utf-8")
    write_synthetic_readme(
        out,
        generator="lightning_hpml.datamodules.synthetic.write_irs",
        description="IRS (HKBU-HPML indoor stereo: RGB pairs, EXR disparity and surface normals) plus list files",
        parameters={
            "scenes_per_category": scenes_per_category,
            "frames_per_scene": frames,
            "test_every": test_every,
            "height": height,
            "width": width,
            "max_disparity": max_disparity,
            "min_disparity": min_disparity,
            "focal": focal,
            "baseline": IRS_BASELINE,
            "seed": seed,
            "anti_alias": anti_alias,
            "num_train_pairs": len(train),
            "num_test_pairs": len(test),
            "normal_convention": "left camera frame (x right, y down, z forward), facing the camera, stored (n+1)/2",
        },
    )
    return out
