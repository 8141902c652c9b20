"""Project folders (DTU evaluation set / Tanks and Temples layout): resizing keeps cameras consistent."""

from __future__ import annotations

import pytest
import torch

from lightning_hpml.datamodules.formats.pfm import read_pfm
from lightning_hpml.datamodules.mvs import MVSProjectDataModule
from lightning_hpml.datamodules.synthetic.dtu_writer import write_mvs_project
from lightning_hpml.modules.layers.epipolar import project


def test_resized_views_keep_projections_consistent(tmp_path):
    root = write_mvs_project(tmp_path, "scan1", num_views=4, height=96, width=128)
    data = MVSProjectDataModule(str(root), ("scan1",), num_views=3, image_size=(64, 96))
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    assert batch["images"].shape == (1, 3, 3, 64, 96) and batch["scan"] == ["scan1"]
    k = batch["intrinsics"][0].double()
    ref = int(batch["view_ids"][0, 0])
    depth = torch.from_numpy(read_pfm(root / "scan1" / "depths" / f"{ref:08d}.pfm")).double()
    # K is scaled directly (MVSNet's convention, half-pixel offset ignored): a point seen at (u, v) moves to s * (u, v)
    u, v = 40.0, 30.0
    k_full = k[0].clone()
    k_full[0] *= 128 / 96
    k_full[1] *= 96 / 64
    point = torch.linalg.inv(k_full) @ torch.tensor([u, v, 1.0], dtype=torch.float64) * depth[int(v), int(u)]
    pixel, _ = project(point[None, None], k[0][None])
    torch.testing.assert_close(pixel[0, 0], torch.tensor([u * 96 / 128, v * 64 / 96], dtype=torch.float64))
    assert len(data.predict_set) == 4


def test_low_scores_are_skipped_and_bad_folders_reported(tmp_path):
    root = write_mvs_project(tmp_path, "Family", num_views=3, height=32, width=48)
    skip_all = MVSProjectDataModule(str(root), ("Family",), num_views=3, min_score=10.0)
    skip_all.setup("predict")
    assert len(skip_all.predict_set) == 0
    with pytest.raises(FileNotFoundError, match="Horse/pair.txt not found"):
        MVSProjectDataModule(str(root), ("Horse",)).setup("predict")
    with pytest.raises(ValueError, match="cams_folder"):
        MVSProjectDataModule(str(root), ("Family",), cams_folder="cameras")
