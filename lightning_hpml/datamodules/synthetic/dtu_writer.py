"""Write a synthetic multi-view dataset in the MVSNet-preprocessed DTU training layout.

Layout written (as ``mvs_training/dtu`` plus the separately distributed ``Depths_raw``)::

    Cameras/pair.txt                                  views ranked by angular proximity
    Cameras/train/{view:08d}_cam.txt                  shared by all scans; intrinsics at 1/4 image scale, as DTU's
    Rectified/scan{N}_train/rect_{view+1:03d}_{light}_r5000.png      light 0..6 (brightness levels)
    Depths_raw/scan{N}/depth_map_{view:04d}.pfm        z-depth at image resolution (real DTU: 1200x1600)

Every scan is its own random tabletop scene (:mod:`.mvs_scene`) seen from the same arc of cameras, like DTU's robot
arm positions; depth maps come from the geometry, so reprojection between views is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_hpml.datamodules.formats.image import write_rgb
from lightning_hpml.datamodules.formats.mvs_cameras import MVSCamera, write_cam_txt, write_pair_txt
from lightning_hpml.datamodules.formats.pfm import write_pfm
from lightning_hpml.datamodules.synthetic.mvs_scene import arc_cameras, render_view, tabletop_scene
from lightning_hpml.datamodules.synthetic.output_tree import (
    item_rng,
    positive_int,
    prepare_output_root,
    write_synthetic_readme,
)

__all__ = ["DTU_LIGHTS", "write_mvs_project", "write_synthetic_dtu"]

DTU_LIGHTS = 7
_LIGHT_GAINS = np.linspace(0.55, 1.25, DTU_LIGHTS)


def _intrinsic(height: int, width: int) -> np.ndarray:
    focal = 1.1 * width
    return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])


def _pairs_by_distance(cameras: list[np.ndarray], score_offset: float = 0.0) -> dict[int, list[tuple[int, float]]]:
    """pair.txt contents: for each view, the others nearest first, scored ``offset + exp(-distance)``."""
    centres = np.stack([-e[:3, :3].T @ e[:3, 3] for e in cameras])
    pairs = {}
    for ref in range(len(cameras)):
        distance = np.linalg.norm(centres - centres[ref], axis=1)
        others = sorted((v for v in range(len(cameras)) if v != ref), key=lambda v: distance[v])
        pairs[ref] = [(v, score_offset + float(np.exp(-distance[v]))) for v in others]
    return pairs


def write_synthetic_dtu(
    root: str | Path,
    scans: list[int] | tuple[int, ...] = (1, 2, 3, 4),
    num_views: int = 5,
    height: int = 64,
    width: int = 80,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Render ``scans`` x ``num_views`` views of ``height x width`` and write them in DTU's training layout."""
    positive_int("num_views", num_views)
    positive_int("height", height)
    positive_int("width", width)
    out = prepare_output_root(root, overwrite=overwrite)
    intrinsic = _intrinsic(height, width)
    cameras = arc_cameras(num_views)
    quarter = intrinsic.copy()
    quarter[:2] /= 4.0  # DTU's training cams are at the 1/4 feature scale
    for view, extrinsic in enumerate(cameras):
        write_cam_txt(
            out / "Cameras" / "train" / f"{view:08d}_cam.txt",
            MVSCamera(extrinsic, quarter, depth_min=2.0, depth_interval=0.04),
        )
    write_pair_txt(out / "Cameras" / "pair.txt", _pairs_by_distance(cameras))
    for scan in scans:
        scene = tabletop_scene(item_rng(seed, f"dtu/scan{scan}"))
        for view, extrinsic in enumerate(cameras):
            rgb, depth = render_view(scene, extrinsic, intrinsic, height, width)
            for light, gain in enumerate(_LIGHT_GAINS):
                lit = np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)
                write_rgb(out / "Rectified" / f"scan{scan}_train" / f"rect_{view + 1:03d}_{light}_r5000.png", lit)
            write_pfm(out / "Depths_raw" / f"scan{scan}" / f"depth_map_{view:04d}.pfm", depth)
    write_synthetic_readme(
        out,
        "lightning_hpml.datamodules.synthetic.dtu_writer",
        "DTU (MVSNet training layout)",
        {"scans": list(scans), "num_views": num_views, "height": height, "width": width, "seed": seed},
        content="Content: a random textured tabletop per scan, rendered from one arc of cameras shared by all scans;\n"
        "depth maps are the exact camera-frame z of the surface hit by each pixel-centre ray.",
    )
    return out


def write_mvs_project(
    root: str | Path,
    scene: str = "scan1",
    num_views: int = 5,
    height: int = 96,
    width: int = 128,
    seed: int = 0,
    cams_folder: str = "cams",
) -> Path:
    """One scene in the evaluation / Tanks-and-Temples project layout (``images``, ``cams``, ``pair.txt``), at
    full image scale, plus its exact depth maps under ``<scene>/depths/`` for checking predictions. Pair scores are
    above 2 (Tanks and Temples loaders skip views whose best score is <= 1). ``cams_folder="cams_1"`` writes
    IterMVS-style cameras whose depth line is ``DEPTH_MIN DEPTH_MAX``; ``"cams"`` MVSNet's ``DEPTH_MIN INTERVAL``."""
    if cams_folder not in ("cams", "cams_1"):
        raise ValueError(f"`cams_folder` must be 'cams' or 'cams_1', got {cams_folder!r}")
    out = Path(root)
    intrinsic = _intrinsic(height, width)
    cameras = arc_cameras(num_views)
    scene_data = tabletop_scene(item_rng(seed, f"project/{scene}"))
    for view, extrinsic in enumerate(cameras):
        rgb, depth = render_view(scene_data, extrinsic, intrinsic, height, width)
        write_rgb(out / scene / "images" / f"{view:08d}.jpg", rgb)
        if cams_folder == "cams_1":
            camera = MVSCamera(extrinsic, intrinsic, depth_min=2.0, depth_max=10.0)
        else:
            camera = MVSCamera(extrinsic, intrinsic, depth_min=2.0, depth_interval=0.04)
        write_cam_txt(out / scene / cams_folder / f"{view:08d}_cam.txt", camera)
        write_pfm(out / scene / "depths" / f"{view:08d}.pfm", depth)
    write_pair_txt(out / scene / "pair.txt", _pairs_by_distance(cameras, score_offset=2.0))
    return out
