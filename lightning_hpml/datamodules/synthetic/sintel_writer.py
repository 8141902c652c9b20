"""Write a synthetic MPI Sintel stereo tree in the dataset's real on-disk layout.

The Sintel loader must read this tree exactly as it reads the real download (Butler et al., "A naturalistic open
source movie for optical flow evaluation", ECCV 2012; stereo training set of 2015), so folder and file names and
the file formats are those of the distribution::

    <root>/training/clean_left/<scene>/frame_NNNN.png      RGB, clean pass, left camera
    <root>/training/clean_right/<scene>/frame_NNNN.png     RGB, clean pass, right camera
    <root>/training/final_left/<scene>/frame_NNNN.png      RGB, final pass (same geometry, "final" look)
    <root>/training/final_right/<scene>/frame_NNNN.png
    <root>/training/disparities/<scene>/frame_NNNN.png     left-view disparity, 8-bit RGB,
                                                           d = R*4 + G/2^6 + B/2^14
    <root>/training/occlusions/<scene>/frame_NNNN.png      8-bit grey: 255 = visible in the left view but hidden
                                                           in the right one, 0 otherwise
    <root>/training/outofframe/<scene>/frame_NNNN.png      8-bit grey: 255 = leaves the right image, 0 otherwise
    <root>/lists/Sintel_ALL.list                           FADNet-style list of every pair (clean pass)
    <root>/SYNTHETIC_README.txt

Scenes carry the 23 real scene names (:data:`SINTEL_SCENES`) so scene-based splits that name them work unchanged;
frames are numbered from ``frame_0001`` as in the real set. ``frames_per_scene=None`` writes the real number of
frames per scene (1,064 pairs in all); the default writes 2 per scene, which is enough for tests and demos.

The occlusion and out-of-frame masks come from the renderer's exact visibility test (``occlusion_left`` /
``out_of_frame_left``). The two masks are written disjoint (a pixel that leaves the right image is marked only in
``outofframe``); the loader ORs them, so its validity does not depend on that choice. The final pass is the clean
pass with :func:`~.sceneflow_writer.final_pass_look` (blur, vignetting, colour cast, noise), like Sintel's final
pass adds motion blur, depth of field and atmospheric effects to the same geometry. Every frame is rendered from
its own seed derived from ``(seed, scene/frame)``, so a frame does not change when other counts change. The list
file follows FADNet's ``lists/Sintel_ALL.list`` (``left right disparity`` per line), with paths relative to
``root`` (FADNet's own list prefixes ``MPI-Sintel/`` and drops ``training/``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lightning_hpml.datamodules.formats import write_rgb, write_sintel_disparity
from lightning_hpml.datamodules.synthetic.output_tree import (
    disparity_range,
    item_rng,
    positive_int,
    prepare_output_root,
    validate_seed,
    write_synthetic_readme,
)
from lightning_hpml.datamodules.synthetic.random_scene import default_max_disparity
from lightning_hpml.datamodules.synthetic.sceneflow_writer import final_pass_look
from lightning_hpml.datamodules.synthetic.stereo_scene import render_stereo_pair

__all__ = [
    "SINTEL_ALL_LIST",
    "SINTEL_FOLDERS",
    "SINTEL_IMAGE_SIZE",
    "SINTEL_PASSES",
    "SINTEL_SCENES",
    "SINTEL_SCENE_FRAMES",
    "write_sintel_stereo",
]

SINTEL_SCENE_FRAMES: dict[str, int] = {
    "alley_1": 50,
    "alley_2": 50,
    "ambush_2": 21,
    "ambush_4": 33,
    "ambush_5": 50,
    "ambush_6": 20,
    "ambush_7": 50,
    "bamboo_1": 50,
    "bamboo_2": 50,
    "bandage_1": 50,
    "bandage_2": 50,
    "cave_2": 50,
    "cave_4": 50,
    "market_2": 50,
    "market_5": 50,
    "market_6": 40,
    "mountain_1": 50,
    "shaman_2": 50,
    "shaman_3": 50,
    "sleeping_1": 50,
    "sleeping_2": 50,
    "temple_2": 50,
    "temple_3": 50,
}
"""Frames per scene of the real stereo training set (23 scenes, 1,064 pairs; OpenStereo ``Sintel_*_train.txt``)."""
SINTEL_SCENES: tuple[str, ...] = tuple(SINTEL_SCENE_FRAMES)
"""The 23 training scene names, sorted."""
SINTEL_IMAGE_SIZE = (436, 1024)
"""``(height, width)`` of the real images."""
SINTEL_PASSES = ("clean", "final")
"""Render passes; images go to ``training/<pass>_{left,right}``."""
SINTEL_FOLDERS = ("disparities", "occlusions", "outofframe")
"""Ground-truth folders under ``training/``."""
SINTEL_ALL_LIST = "lists/Sintel_ALL.list"
"""FADNet-style list of all pairs, relative to the root."""


def _write_mask(path: Path, mask: np.ndarray) -> None:
    """8-bit grey PNG, 255 where ``mask`` is True (Sintel's occlusion / out-of-frame masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, np.uint8(255), np.uint8(0))).save(path)


def write_sintel_stereo(
    root: str | os.PathLike[str],
    *,
    scenes: Sequence[str] | None = None,
    frames_per_scene: int | None = 2,
    height: int = 96,
    width: int = 224,
    max_disparity: float | None = None,
    min_disparity: float | None = None,
    seed: int = 0,
    anti_alias: int = 2,
    overwrite: bool = False,
) -> Path:
    """Render and write a synthetic MPI Sintel stereo training tree (layout in the module docstring).

    Args:
        root: Destination folder; must be empty or absent (see ``overwrite``).
        scenes: Scene folder names; ``None`` = the 23 real ones (:data:`SINTEL_SCENES`). Other names are allowed.
        frames_per_scene: Frames per scene; ``None`` = the real count of each real scene (50 for other names).
        height: Image height in pixels (the real set: 436).
        width: Image width in pixels (the real set: 1024).
        max_disparity: Largest disparity in pixels; default :func:`~.random_scene.default_max_disparity` of the
            width.
        min_disparity: Smallest disparity; default ``max(0.5, max_disparity / 20)``.
        seed: Seed of the whole tree.
        anti_alias: Sub-pixel rays per axis for the image colours.
        overwrite: Replace a synthetic tree already in ``root`` (never a folder without our README).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: Empty or duplicate scene names, a non-positive count or size, a disparity range outside
            ``(0, width)``, or a negative seed.
        FileExistsError: ``root`` is not empty (see :func:`~.output_tree.prepare_output_root`).
    """
    scenes = SINTEL_SCENES if scenes is None else ((scenes,) if isinstance(scenes, str) else tuple(scenes))
    bad = [s for s in scenes if not isinstance(s, str) or not s or "/" in s or "\\" in s]
    if not scenes or bad or len(set(scenes)) != len(scenes):
        raise ValueError(f"`scenes` must be distinct non-empty folder names, got {scenes!r}")
    if frames_per_scene is not None:
        frames_per_scene = positive_int("frames_per_scene", frames_per_scene)
    height = positive_int("height", height)
    width = positive_int("width", width)
    max_disparity, min_disparity = disparity_range(
        max_disparity, min_disparity, default_max=default_max_disparity(width), limit=width, why=" (image width)"
    )
    seed = validate_seed(seed)
    out = prepare_output_root(root, overwrite=overwrite)
    training = out / "training"

    lines: list[str] = []
    for scene in scenes:
        count = frames_per_scene if frames_per_scene is not None else SINTEL_SCENE_FRAMES.get(scene, 50)
        for index in range(1, count + 1):
            name = f"{scene}/frame_{index:04d}.png"
            key = f"sintel/{scene}/frame_{index:04d}"
            render = render_stereo_pair(
                height,
                width,
                max_disparity=float(max_disparity),
                min_disparity=min_disparity,
                seed=item_rng(seed, key),
                anti_alias=anti_alias,
            )
            clean = (render.left, render.right)
            final = final_pass_look(clean, item_rng(seed, key + "/final"))
            for render_pass, views in (("clean", clean), ("final", final)):
                write_rgb(training / f"{render_pass}_left" / name, views[0])
                write_rgb(training / f"{render_pass}_right" / name, views[1])
            write_sintel_disparity(training / "disparities" / name, render.disparity_left)
            _write_mask(training / "occlusions" / name, render.occlusion_left & ~render.out_of_frame_left)
            _write_mask(training / "outofframe" / name, render.out_of_frame_left)
            lines.append(f"training/clean_left/{name} training/clean_right/{name} training/disparities/{name}")

    (out / "lists").mkdir(exist_ok=True)
    (out / SINTEL_ALL_LIST).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    write_synthetic_readme(
        out,
        generator="lightning_hpml.datamodules.synthetic.write_sintel_stereo",
        description="MPI Sintel stereo training set (clean/final passes, disparities, occlusions, outofframe)",
        parameters={
            "scenes": list(scenes),
            "frames_per_scene": frames_per_scene,
            "num_pairs": len(lines),
            "height": height,
            "width": width,
            "max_disparity": max_disparity,
            "min_disparity": min_disparity,
            "seed": seed,
            "anti_alias": anti_alias,
        },
    )
    return out
