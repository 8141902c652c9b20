"""Write a synthetic image sequence in the Nerfbusters / nerfstudio layout, with exact cameras.

Layout written (what ``ns-process-data`` produces for Nerfbusters' two videos)::

    <scene>/transforms.json                      OpenGL camera-to-world per frame, shared pinhole intrinsics
    <scene>/images/frame_train_{i:05d}.png       the training trajectory, in order
    <scene>/images/frame_eval_{i:05d}.png        held-out views between consecutive training frames

The split follows nerfstudio's "filename" evaluation mode (basename containing ``train`` or ``eval``). The camera
circles the textured tabletop scene of :mod:`.mvs_scene` while looking at its centre, turning ``arc_deg`` degrees
in all and moving up and down, so consecutive training frames differ by a strong rotation (CF-NeRF's setting)
and a translation, and the camera centres span a surface (well-posed Sim(3) alignment for the pose evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_hpml.datamodules.formats.image import write_rgb
from lightning_hpml.datamodules.formats.nerfstudio import NerfstudioFrame, opengl_to_opencv, write_transforms_json
from lightning_hpml.datamodules.synthetic.mvs_scene import arc_cameras, render_view, tabletop_scene
from lightning_hpml.datamodules.synthetic.output_tree import (
    item_rng,
    positive_int,
    prepare_output_root,
    write_synthetic_readme,
)

__all__ = ["write_synthetic_nerfbuster"]


def write_synthetic_nerfbuster(
    root: str | Path,
    scene: str = "tabletop",
    train_frames: int = 8,
    height: int = 96,
    width: int = 128,
    arc_deg: float = 50.0,
    height_swing: float = 0.6,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Render ``train_frames`` training views and ``train_frames - 1`` evaluation views in between.

    The cameras sit 4 units from the scene centre, turn ``arc_deg`` degrees in all and move up and down by
    ``height_swing`` units (one sine period).
    """
    positive_int("train_frames", train_frames)
    positive_int("height", height)
    positive_int("width", width)
    out = prepare_output_root(root, overwrite=overwrite)
    focal = 0.9 * width
    intrinsic = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])
    scene_data = tabletop_scene(item_rng(seed, f"nerfbuster/{scene}"))
    cameras = arc_cameras(2 * train_frames - 1, spread_deg=arc_deg, radius=4.0, height_swing=height_swing)
    frames = []
    for index, world_to_camera in enumerate(cameras):
        split = "train" if index % 2 == 0 else "eval"
        name = f"images/frame_{split}_{index // 2 + 1:05d}.png"
        rgb, _ = render_view(scene_data, world_to_camera, intrinsic, height, width)
        write_rgb(out / scene / name, rgb)
        camera_to_world = opengl_to_opencv(np.linalg.inv(world_to_camera))
        frames.append(NerfstudioFrame(Path(name), camera_to_world, intrinsic, width, height))
    write_transforms_json(out / scene / "transforms.json", frames)
    write_synthetic_readme(
        out,
        "lightning_hpml.datamodules.synthetic.nerfbuster_writer",
        "Nerfbusters (nerfstudio layout)",
        {
            "scene": scene,
            "train_frames": train_frames,
            "height": height,
            "width": width,
            "arc_deg": arc_deg,
            "height_swing": height_swing,
            "seed": seed,
        },
        content="Content: a textured tabletop seen along a circular arc looking at its centre; exact OpenGL poses.",
    )
    return out
