"""DTU DataModule on the synthetic tree written in the MVSNet layout: shapes, splits and exact multi-view geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.formats.pfm import read_pfm
from lightning_hpml.datamodules.mvs import DTUDataModule
from lightning_hpml.datamodules.mvs.dtu import DTU_TEST_SCANS, DTU_TRAIN_SCANS, DTU_VAL_SCANS, _depth_to_image_grid
from lightning_hpml.modules.layers.epipolar import project


@pytest.fixture(scope="module")
def dtu(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root))
        data = DTUDataModule(num_views=3, batch_size=2)
        data.prepare_data()
        data.setup("fit")
        yield data


def test_batches_follow_the_mvs_contract(dtu):
    batch = next(iter(dtu.train_dataloader()))
    assert batch["images"].shape == (2, 3, 3, 64, 80) and batch["images"].max() <= 1
    assert batch["intrinsics"].shape == (2, 3, 3, 3) and batch["extrinsics"].shape == (2, 3, 4, 4)
    assert batch["depth"].shape == (2, 1, 64, 80) and batch["valid"].all()
    assert (batch["depth_range"][:, 0] < batch["depth"].amin((1, 2, 3))).all()
    assert [len(dtu.datasets[s]) for s in ("train", "val", "test")] == [2 * 7 * 5, 5, 5]  # 7 lights for training


def test_reference_depth_reprojects_onto_the_source_views_depth(dtu):
    item = dtu.datasets["val"][0]
    k, e, depth = item["intrinsics"].double(), item["extrinsics"].double(), item["depth"][0].double()
    h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)
    ref_points = (pixels @ torch.linalg.inv(k[0]).T) * depth.reshape(-1, 1)
    world = (ref_points - e[0, :3, 3]) @ e[0, :3, :3]  # inverse of x_cam = R x + t
    src = int(item["view_ids"][1])
    src_cam = world @ e[1, :3, :3].T + e[1, :3, 3]
    src_px, src_z = project(src_cam[None], k[1][None])
    src_depth = torch.from_numpy(read_pfm(dtu.data_root / "Depths_raw" / item["scan"] / f"depth_map_{src:04d}.pfm"))
    x, y = src_px[0, :, 0].round().long(), src_px[0, :, 1].round().long()
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    visible = inside.clone()
    visible[inside] = (src_depth[y[inside], x[inside]].double() - src_z[0, inside]).abs() < 0.05 * src_z[0, inside]
    assert inside.float().mean() > 0.5
    assert visible.sum() > 0.7 * inside.sum()  # the rest is occluded or falls on depth edges between pixel centres


def test_splits_and_depth_resolution_rules():
    assert (len(DTU_TRAIN_SCANS), len(DTU_VAL_SCANS), len(DTU_TEST_SCANS)) == (79, 18, 22)
    assert not set(DTU_TRAIN_SCANS) & (set(DTU_VAL_SCANS) | set(DTU_TEST_SCANS))
    full = np.arange(1200 * 1600, dtype=np.float32).reshape(1200, 1600)
    cropped = _depth_to_image_grid(full, (512, 640), "d.pfm")
    assert cropped.shape == (512, 640) and cropped[0, 0] == full[88, 160]
    with pytest.raises(ValueError, match="d.pfm: depth map is \\(10, 10\\)"):
        _depth_to_image_grid(np.zeros((10, 10)), (64, 80), "d.pfm")


def test_missing_dataset_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="Cameras/pair.txt not found"):
        DTUDataModule(root=str(tmp_path)).setup("fit")


def test_cameras_1_folder_reads_max_depth(dtu, tmp_path):
    import shutil

    from lightning_hpml.datamodules.formats.mvs_cameras import read_cam_txt, write_cam_txt

    root = tmp_path / "dtu"
    shutil.copytree(dtu.data_root, root)
    for cam_file in sorted((root / "Cameras" / "train").glob("*_cam.txt")):
        camera = read_cam_txt(cam_file)
        camera.depth_max, camera.depth_interval = 9.0, None
        write_cam_txt(root / "Cameras_1" / cam_file.name, camera)
    data = DTUDataModule(
        root=str(root), num_views=3, cams_folder="Cameras_1", train_scans=(2,), val_scans=(3,), test_scans=(4,)
    )
    data.setup("fit")
    assert data.datasets["val"][0]["depth_range"].tolist() == [2.0, 9.0]
    with pytest.raises(ValueError, match="cams_folder"):
        DTUDataModule(cams_folder="cams")
