"""Write a small synthetic Scene Flow tree (FlyingThings3D, Monkaa, Driving) in the dataset's real on-disk layout.

The Scene Flow loaders must read this tree exactly as they read the real download, so the layout, file names and
file formats are those of the distribution (Mayer et al., CVPR 2016), only smaller::

    <root>/FlyingThings3D/frames_{cleanpass,finalpass}/{TRAIN,TEST}/{A,B,C}/<seq:04d>/{left,right}/<frame:04d>.png
    <root>/FlyingThings3D/disparity/{TRAIN,TEST}/{A,B,C}/<seq:04d>/{left,right}/<frame:04d>.pfm
    <root>/Monkaa/frames_{pass}/<scene>/{left,right}/<frame:04d>.png      (+ disparity/<scene>/{left,right}/*.pfm)
    <root>/Driving/frames_{pass}/{15mm,35mm}_focallength/scene_{forwards,backwards}/{fast,slow}/{left,right}/*.png
                                                                          (+ the same below disparity/, *.pfm)
    <root>/lists/sceneflow_train.list                 FADNet-style list: FT3D TRAIN + Monkaa + Driving
    <root>/lists/FlyingThings3D_release_TEST.list     FADNet-style list: FT3D TEST
    <root>/SYNTHETIC_README.txt

FlyingThings3D frames are numbered from 0006 (the real set holds 0006..0015 per sequence), Monkaa from 0000 and
Driving from 0001, as in the real set. Both views' disparities are written, positive, as float32 PFM (the right
view's disparity maps a right pixel ``x`` to the left pixel ``x + d``). The final pass is the clean pass with the
look of a rendered "final" image - mild blur, vignetting, a slight colour cast and sensor noise - and the same
geometry and disparity. List files hold one sample per line, ``left right disparity`` separated by spaces, paths
relative to ``root`` and into the clean pass (the final pass when only that one is written), as FADNet's lists do.

Every frame is rendered from its own seed derived from ``(seed, path of the frame)``, so a frame does not change
when other counts change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lightning_hpml.datamodules.formats import write_pfm, write_rgb
from lightning_hpml.datamodules.synthetic.output_tree import (
    disparity_range,
    item_rng,
    positive_int,
    prepare_output_root,
    validate_seed,
    write_synthetic_readme,
)
from lightning_hpml.datamodules.synthetic.random_scene import default_max_disparity
from lightning_hpml.datamodules.synthetic.stereo_scene import render_stereo_pair

__all__ = ["SCENEFLOW_PASSES", "SCENEFLOW_SUBSETS", "TEST_LIST", "TRAIN_LIST", "final_pass_look", "write_sceneflow"]

SCENEFLOW_SUBSETS = ("FlyingThings3D", "Monkaa", "Driving")
"""Subset folder names, as in the distribution."""
SCENEFLOW_PASSES = ("cleanpass", "finalpass")
"""Render passes; images go to ``frames_<pass>``."""
TRAIN_LIST = "lists/sceneflow_train.list"
"""Training list (FT3D TRAIN + Monkaa + Driving), relative to the root."""
TEST_LIST = "lists/FlyingThings3D_release_TEST.list"
"""Test list (FT3D TEST), relative to the root; written when FlyingThings3D is among the subsets."""

_FT3D_FIRST_FRAME = 6
_FT3D_FRAMES_PER_SEQUENCE = 10  # 0006..0015
_FT3D_LETTERS = ("A", "B", "C")
_MONKAA_SCENES = (
    "a_rain_of_stones_x2",
    "eating_x2",
    "family_x2",
    "flower_storm_x2",
    "funnyworld_x2",
    "lonetree_x2",
    "top_view_x2",
    "treeflight_x2",
)
_DRIVING_LEAVES = tuple(
    f"{focal}/{direction}/{speed}"
    for focal in ("15mm_focallength", "35mm_focallength")
    for direction in ("scene_forwards", "scene_backwards")
    for speed in ("fast", "slow")
)


@dataclass(frozen=True)
class _Frame:
    """One stereo frame: ``<root>/<subset>/{frames_<pass>,disparity}/<sequence>/{left,right}/<name>.{png,pfm}``."""

    subset: str
    sequence: str
    name: str
    train: bool

    def image(self, render_pass: str, view: str) -> str:
        return f"{self.subset}/frames_{render_pass}/{self.sequence}/{view}/{self.name}.png"

    def disparity(self, view: str) -> str:
        return f"{self.subset}/disparity/{self.sequence}/{view}/{self.name}.pfm"


def _monkaa_scene(index: int) -> str:
    if index < len(_MONKAA_SCENES):
        return _MONKAA_SCENES[index]
    return f"synthetic_{index:03d}_x2"


def _frames(subsets: Sequence[str], num_sequences: int, num_test_sequences: int, frames: int) -> list[_Frame]:
    """All frames of the tree, in a fixed order."""
    out: list[_Frame] = []
    for subset in subsets:
        if subset == "FlyingThings3D":
            names = [f"{_FT3D_FIRST_FRAME + i:04d}" for i in range(frames)]
            for part, letters, count in (("TRAIN", _FT3D_LETTERS, num_sequences), ("TEST", ("A",), num_test_sequences)):
                for letter in letters:
                    for seq in range(count):
                        out += [_Frame(subset, f"{part}/{letter}/{seq:04d}", n, part == "TRAIN") for n in names]
        elif subset == "Monkaa":
            for seq in range(num_sequences):
                out += [_Frame(subset, _monkaa_scene(seq), f"{i:04d}", True) for i in range(frames)]
        else:  # Driving: every focal length / direction / speed folder, as in the real set
            for leaf in _DRIVING_LEAVES:
                out += [_Frame(subset, leaf, f"{i + 1:04d}", True) for i in range(frames)]
    return out


def final_pass_look(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Give clean renders the look of Scene Flow's final pass, leaving the geometry untouched.

    Both views share one blur, vignetting and colour cast (one camera model); each gets its own sensor noise.

    Args:
        images: uint8 ``(H, W, 3)`` RGB views of one frame.
        rng: Randomness for the effect strengths and the noise.

    Returns:
        uint8 images of the same shapes.
    """
    sigma = rng.uniform(0.5, 1.0)
    vignetting = rng.uniform(0.12, 0.3)
    cast = rng.uniform(0.94, 1.06, size=3).astype(np.float32)
    noise = rng.uniform(1.5, 3.5)
    out = []
    for image in images:
        h, w = image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
        gain = (1.0 - vignetting * r2)[..., None] * cast
        blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=sigma)
        noisy = blurred * gain + rng.normal(0.0, noise, size=image.shape).astype(np.float32)
        out.append(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    return out


def write_sceneflow(
    root: str | os.PathLike[str],
    *,
    subsets: Sequence[str] = ("FlyingThings3D",),
    num_sequences: int = 2,
    num_test_sequences: int = 1,
    frames_per_sequence: int = 2,
    height: int = 144,
    width: int = 256,
    max_disparity: float | None = None,
    min_disparity: float | None = None,
    seed: int = 0,
    passes: Sequence[str] = SCENEFLOW_PASSES,
    anti_alias: int = 2,
    overwrite: bool = False,
) -> Path:
    """Render and write a synthetic Scene Flow tree (layout in the module docstring).

    Args:
        root: Destination folder; must be empty or absent (see ``overwrite``).
        subsets: Any of ``"FlyingThings3D"``, ``"Monkaa"``, ``"Driving"``.
        num_sequences: FlyingThings3D ``TRAIN`` sequences per letter (A, B, C) and number of Monkaa scenes.
            Driving always gets all eight focal-length/direction/speed folders of the real set.
        num_test_sequences: FlyingThings3D ``TEST/A`` sequences.
        frames_per_sequence: Frames in each sequence (FlyingThings3D: at most 10, numbered 0006..0015).
        height: Image height in pixels (the real set: 540).
        width: Image width in pixels (the real set: 960).
        max_disparity: Largest disparity in pixels; default :func:`~.random_scene.default_max_disparity` of the
            width (40 px at width 256).
        min_disparity: Smallest disparity; default ``max(0.5, max_disparity / 20)``.
        seed: Seed of the whole tree.
        passes: Which of ``"cleanpass"``, ``"finalpass"`` to write.
        anti_alias: Sub-pixel rays per axis for the image colours.
        overwrite: Replace a synthetic tree already in ``root`` (never a folder without our README).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: An unknown subset or pass, a non-positive count, too many FlyingThings3D frames, a bad image
            size or disparity range, or a negative seed.
        FileExistsError: ``root`` is not empty (see :func:`~.output_tree.prepare_output_root`).
    """
    subsets = tuple(subsets) if not isinstance(subsets, str) else (subsets,)
    passes = tuple(passes) if not isinstance(passes, str) else (passes,)
    unknown = [s for s in subsets if s not in SCENEFLOW_SUBSETS]
    if unknown or not subsets or len(set(subsets)) != len(subsets):
        raise ValueError(f"`subsets` must be distinct names among {SCENEFLOW_SUBSETS}, got {subsets!r}")
    unknown = [p for p in passes if p not in SCENEFLOW_PASSES]
    if unknown or not passes or len(set(passes)) != len(passes):
        raise ValueError(f"`passes` must be distinct names among {SCENEFLOW_PASSES}, got {passes!r}")
    num_sequences = positive_int("num_sequences", num_sequences)
    num_test_sequences = positive_int("num_test_sequences", num_test_sequences)
    frames = positive_int(
        "frames_per_sequence", frames_per_sequence, _FT3D_FRAMES_PER_SEQUENCE if "FlyingThings3D" in subsets else None
    )
    height = positive_int("height", height)
    width = positive_int("width", width)
    max_disparity, min_disparity = disparity_range(
        max_disparity, min_disparity, default_max=default_max_disparity(width), limit=width, why=" (image width)"
    )
    seed = validate_seed(seed)
    out = prepare_output_root(root, overwrite=overwrite)

    list_pass = "cleanpass" if "cleanpass" in passes else "finalpass"
    train_lines: list[str] = []
    test_lines: list[str] = []
    for frame in _frames(subsets, num_sequences, num_test_sequences, frames):
        key = f"{frame.subset}/{frame.sequence}/{frame.name}"
        render = render_stereo_pair(
            height,
            width,
            max_disparity=float(max_disparity),
            min_disparity=min_disparity,
            seed=item_rng(seed, key),
            anti_alias=anti_alias,
        )
        write_pfm(out / frame.disparity("left"), render.disparity_left)
        write_pfm(out / frame.disparity("right"), render.disparity_right)
        views = {"cleanpass": (render.left, render.right)}
        if "finalpass" in passes:
            views["finalpass"] = tuple(final_pass_look(views["cleanpass"], item_rng(seed, key + "/finalpass")))
        for render_pass in passes:
            for view, image in zip(("left", "right"), views[render_pass]):
                write_rgb(out / frame.image(render_pass, view), image)
        line = " ".join((frame.image(list_pass, "left"), frame.image(list_pass, "right"), frame.disparity("left")))
        (train_lines if frame.train else test_lines).append(line)

    (out / "lists").mkdir(exist_ok=True)
    (out / TRAIN_LIST).write_text("".join(f"{line}\n" for line in train_lines), encoding="utf-8")
    if "FlyingThings3D" in subsets:
        (out / TEST_LIST).write_text("".join(f"{line}\n" for line in test_lines), encoding="utf-8")
    write_synthetic_readme(
        out,
        generator="lightning_hpml.datamodules.synthetic.write_sceneflow",
        description="Scene Flow (FlyingThings3D / Monkaa / Driving) as distributed, plus FADNet-style list files",
        parameters={
            "subsets": list(subsets),
            "num_sequences": num_sequences,
            "num_test_sequences": num_test_sequences,
            "frames_per_sequence": frames,
            "height": height,
            "width": width,
            "max_disparity": max_disparity,
            "min_disparity": min_disparity,
            "seed": seed,
            "passes": list(passes),
            "anti_alias": anti_alias,
            "num_train_pairs": len(train_lines),
            "num_test_pairs": len(test_lines),
            "list_pass": list_pass,
        },
    )
    return out
