"""Write synthetic box-room panoramas in the on-disk layout of Stanford2D3D, Matterport3D or 3D60.

Each panorama is :func:`~lightning_hpml.datamodules.synthetic.panorama_room.render_panorama` of its own random room
(seeded per item), written with that dataset's depth encoding and file names, plus the split files its DataModule
reads (Matterport3D's ``scenes_<split>.txt``, UniFuse-style list files for 3D60; Stanford2D3D's split is by area).
"""

from __future__ import annotations

from pathlib import Path

from lightning_hpml.datamodules.formats.image import write_rgb
from lightning_hpml.datamodules.formats.panorama_depth import (
    MATTERPORT3D_DEPTH_SCALE,
    STANFORD2D3D_DEPTH_SCALE,
    write_depth_exr,
    write_depth_png,
)
from lightning_hpml.datamodules.synthetic.output_tree import (
    item_rng,
    positive_int,
    prepare_output_root,
    validate_seed,
    write_synthetic_readme,
)
from lightning_hpml.datamodules.synthetic.panorama_room import random_room, render_panorama

__all__ = ["PANORAMA_LAYOUTS", "write_panorama_dataset"]

PANORAMA_LAYOUTS = ("stanford2d3d", "matterport3d", "3d60")
_SPLITS = ("train", "val", "test")


def _stanford(root: Path, split: str, index: int, rgb, depth) -> None:
    area = {"train": "area_1", "val": "area_5b", "test": "area_5a"}[split]
    stem = f"camera_{index:08x}_room_{index}_frame_equirectangular_domain"
    write_rgb(root / area / "pano" / "rgb" / f"{stem}_rgb.png", rgb)
    write_depth_png(
        root / area / "pano" / "depth" / f"{stem}_depth.png", depth, depth > 0, STANFORD2D3D_DEPTH_SCALE, 65535
    )


def _matterport(root: Path, split: str, index: int, rgb, depth) -> str:
    house = f"synth{split.capitalize()}House{index // 4}"
    stem = f"{index:06d}"
    write_rgb(root / house / "pano_skybox_color" / f"{stem}.jpg", rgb)
    write_depth_png(root / house / "pano_depth" / f"{stem}.png", depth, depth > 0, MATTERPORT3D_DEPTH_SCALE, 0)
    return house


def _d3d60(root: Path, split: str, index: int, rgb, depth) -> str:
    stem = f"Matterport3D/{split}_{index:05d}"
    write_rgb(root / f"{stem}_color_0_Left_Down_0.0.png", rgb)
    write_depth_exr(root / f"{stem}_depth_0_Left_Down_0.0.exr", depth, depth > 0)
    return f"./{stem}_color_0_Left_Down_0.0.png ./{stem}_depth_0_Left_Down_0.0.exr"


def write_panorama_dataset(
    root: str | Path,
    layout: str,
    counts: tuple[int, int, int] = (16, 4, 4),
    height: int = 64,
    width: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Render ``counts`` (train, val, test) panoramas of ``height x width`` and write them as ``layout``."""
    if layout not in PANORAMA_LAYOUTS:
        raise ValueError(f"`layout` must be one of {PANORAMA_LAYOUTS}, got {layout!r}")
    if width != 2 * height:
        raise ValueError(f"an equirectangular panorama has width = 2 * height, got {height} x {width}")
    for split, n in zip(_SPLITS, counts):
        positive_int(f"{split} count", n)
    positive_int("height", height, upper=4096)
    seed = validate_seed(seed)
    out = prepare_output_root(root, overwrite=overwrite)
    lists: dict[str, list[str]] = {split: [] for split in _SPLITS}
    index = 0
    for split, n in zip(_SPLITS, counts):
        for _ in range(n):
            rgb, depth = render_panorama(random_room(item_rng(seed, f"{layout}/{index}")), height, width)
            if layout == "stanford2d3d":
                _stanford(out, split, index, rgb, depth)
            elif layout == "matterport3d":
                lists[split].append(_matterport(out, split, index, rgb, depth))
            else:
                lists[split].append(_d3d60(out, split, index, rgb, depth))
            index += 1
    for split, lines in lists.items():
        if layout == "matterport3d":
            (out / f"scenes_{split}.txt").write_text("\n".join(dict.fromkeys(lines)) + "\n", encoding="utf-8")
        elif layout == "3d60":
            (out / f"3d60_{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_synthetic_readme(
        out,
        "lightning_hpml.datamodules.synthetic.panorama_writer",
        f"{layout} panoramas",
        {"layout": layout, "counts": list(counts), "height": height, "width": width, "seed": seed},
        content="Content: equirectangular RGB-D of random textured box rooms with boxes, ray cast from known\n"
        "geometry; depth is the exact range (distance along each pixel-centre ray) in metres.",
    )
    return out
