"""Nerfbusters / nerfstudio layout, COLMAP text export, and the NeRF image-sequence DataModule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from lightning_hpml.datamodules.formats.colmap_text import (
    ColmapFormatError,
    ColmapImage,
    read_colmap_text,
    write_colmap_text,
)
from lightning_hpml.datamodules.formats.image import write_rgb
from lightning_hpml.datamodules.formats.nerfstudio import (
    NerfstudioFormatError,
    opengl_to_opencv,
    read_transforms_json,
    write_transforms_json,
)
from lightning_hpml.datamodules.nerf import NeRFBusterDataModule
from lightning_hpml.datamodules.synthetic.mvs_scene import arc_cameras
from lightning_hpml.datamodules.synthetic.nerfbuster_writer import write_synthetic_nerfbuster


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = write_synthetic_nerfbuster(tmp_path_factory.mktemp("nerfbusters"), train_frames=4, height=48, width=64)
    data = NeRFBusterDataModule(root=str(root), scene="tabletop")
    data.setup("fit")
    return data


def test_transforms_json_round_trips_and_poses_follow_the_renderer(scene, tmp_path):
    frames = read_transforms_json(scene.scene_dir / "transforms.json")
    assert [f.file_path.name for f in frames[:3]] == ["frame_train_00001.png", "frame_eval_00001.png",
                                                      "frame_train_00002.png"]  # fmt: skip
    copy = tmp_path / "copy" / "transforms.json"
    write_transforms_json(copy, frames)
    again = read_transforms_json(copy)
    for a, b in zip(frames, again):
        assert a.file_path == b.file_path and a.width == b.width and a.height == b.height
        np.testing.assert_allclose(a.camera_to_world, b.camera_to_world)
        np.testing.assert_allclose(a.intrinsic, b.intrinsic)
    # OpenGL -> OpenCV gives back the renderer's world-to-camera inverse.
    world_to_camera = arc_cameras(7, spread_deg=50.0, radius=4.0, height_swing=0.6)
    for frame, expected in zip(frames, world_to_camera):
        np.testing.assert_allclose(np.linalg.inv(opengl_to_opencv(frame.camera_to_world)), expected, atol=1e-9)


def test_orbit_arc_and_height_swing_are_written_as_asked(tmp_path):
    root = write_synthetic_nerfbuster(tmp_path, train_frames=3, height=12, width=16, arc_deg=60.0, height_swing=1.2)
    frames = read_transforms_json(root / "tabletop" / "transforms.json")
    expected = arc_cameras(5, spread_deg=60.0, radius=4.0, height_swing=1.2)
    for frame, world_to_camera in zip(frames, expected):
        np.testing.assert_allclose(np.linalg.inv(opengl_to_opencv(frame.camera_to_world)), world_to_camera, atol=1e-9)
    heights = [f.camera_to_world[1, 3] for f in frames]
    assert max(heights) - min(heights) > 2.0  # up and down by 1.2 (OpenGL y is up)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ({"frames": []}, "non-empty 'frames'"),
        ({"frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}, "neither in the frame"),
        (
            {"fl_x": 1, "fl_y": 1, "cx": 1, "cy": 1, "w": 4, "h": 4,
             "frames": [{"file_path": "a.png", "transform_matrix": [[1, 0], [0, 1]]}]},
            "shape",
        ),
        (
            {"fl_x": 1, "fl_y": 1, "cx": 1, "cy": 1, "w": 4, "h": 4,
             "frames": [{"file_path": "a.png", "transform_matrix": (2 * np.eye(4)).tolist()}]},
            "not a proper rotation",
        ),
        (
            {"fl_x": "x", "fl_y": 1, "cx": 1, "cy": 1, "w": 4, "h": 4,
             "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]},
            "finite number",
        ),
    ],
)  # fmt: skip
def test_malformed_transforms_json_is_rejected_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "transforms.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(NerfstudioFormatError, match=message) as info:
        read_transforms_json(path)
    assert str(path) in str(info.value)


def test_colmap_export_re_reads_to_the_same_poses(tmp_path):
    rotations = Rotation.random(5, random_state=3).as_matrix()
    images = []
    for i, rotation in enumerate(rotations):
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, np.random.default_rng(i).normal(size=3)
        k = np.array([[70.5, 0, 31.5], [0, 70.5, 23.5], [0, 0, 1]])
        images.append(ColmapImage(f"frame_{i:05d}.png", pose, k, 64, 48))
    write_colmap_text(tmp_path / "sparse", images)
    again = read_colmap_text(tmp_path / "sparse")
    assert [im.name for im in again] == [im.name for im in images]
    for a, b in zip(images, again):
        np.testing.assert_allclose(a.world_to_camera, b.world_to_camera, atol=1e-12)
        np.testing.assert_allclose(a.intrinsic, b.intrinsic)
    assert (tmp_path / "sparse" / "cameras.txt").read_text().count("PINHOLE") == 1  # one shared camera
    with pytest.raises(FileExistsError):
        write_colmap_text(tmp_path / "sparse", images)
    (tmp_path / "sparse" / "cameras.txt").write_text("1 OPENCV 64 48 1 2 3 4 0 0 0 0\n")
    with pytest.raises(ColmapFormatError, match="PINHOLE"):
        read_colmap_text(tmp_path / "sparse")


def test_datamodule_splits_by_file_name_and_halves_images_with_their_intrinsics(scene):
    full = scene.sequence("train", level=0)
    half = scene.sequence("train", level=1)
    assert full.images.shape == (4, 3, 48, 64) and half.images.shape == (4, 3, 24, 32)
    assert all("train" in n for n in full.names) and all("eval" in n for n in scene.sequence("eval").names)
    # A world point seen at pixel p at full size is seen at (p + 0.5) / 2 - 0.5 after one halving.
    point = torch.tensor([0.2, 0.3, 5.0], dtype=torch.float64)
    world_to_camera = torch.linalg.inv(full.camera_to_world[0].double())
    camera = world_to_camera[:3, :3] @ point + world_to_camera[:3, 3]
    pixel_full = (full.intrinsics[0].double() @ camera)[:2] / camera[2]
    pixel_half = (half.intrinsics[0].double() @ camera)[:2] / camera[2]
    torch.testing.assert_close(pixel_half, (pixel_full + 0.5) / 2 - 0.5)
    batch = next(iter(scene.test_dataloader()))
    assert batch["image"].shape == (1, 3, 48, 64) and batch["camera_to_world"].shape == (1, 4, 4)


def test_pyramid_keeps_pixel_centres_aligned(tmp_path):
    """Each halving smooths and averages 2 x 2 blocks: level-2 pixel j shows full-size coordinate 4 j + 1.5, so a
    principal point at the image centre stays there (``cv2.pyrDown`` would show 4 j: 3/8 pixel off)."""
    ramp = np.broadcast_to((4 * np.arange(64))[None, :, None], (16, 64, 3)).astype(np.uint8)
    for i in range(3):
        write_rgb(tmp_path / "ramp" / "images" / f"{i:03d}.png", ramp)
    data = NeRFBusterDataModule(root=str(tmp_path), scene="ramp", pyramid_level=2)
    data.setup("fit")
    row = data.train_sequence().images[0, 0, 2] * 255.0
    # inside the borders (where the [1, 2, 1] / 4 smoothing before each halving reflects the image) to uint8 rounding
    torch.testing.assert_close(row[1:-1], 4 * (4 * torch.arange(1.0, 15.0) + 1.5), atol=1.01, rtol=0)


def test_image_folder_without_cameras_and_bad_names(tmp_path):
    folder = tmp_path / "mine" / "images"
    for i in range(3):
        write_rgb(folder / f"{i:03d}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    data = NeRFBusterDataModule(root=str(tmp_path), scene="mine")
    data.setup("fit")
    sequence = data.train_sequence()
    assert sequence.names == ["000.png", "001.png", "002.png"] and sequence.camera_to_world is None
    with pytest.raises(ValueError, match="no evaluation frames"):
        data.test_dataloader()
    (tmp_path / "mine" / "transforms.json").write_text(
        json.dumps({"fl_x": 8, "fl_y": 8, "cx": 3.5, "cy": 3.5, "w": 8, "h": 8,
                    "frames": [{"file_path": f"images/{i:03d}.png", "transform_matrix": np.eye(4).tolist()}
                               for i in range(3)]})
    )  # fmt: skip
    with pytest.raises(ValueError, match="neither 'train' nor 'eval'"):
        NeRFBusterDataModule(root=str(tmp_path), scene="mine").setup("fit")
    NeRFBusterDataModule(root=str(tmp_path), scene="mine", eval_mode="all").setup("fit")
    with pytest.raises(FileNotFoundError, match="found neither transforms.json"):
        NeRFBusterDataModule(root=str(tmp_path), scene="absent").setup("fit")
