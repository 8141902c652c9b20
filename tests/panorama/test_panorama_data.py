"""Panorama depth formats and DataModules, on trees written by the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.formats.panorama_depth import (
    PanoramaDepthFormatError,
    read_depth_exr,
    read_depth_png,
    write_depth_exr,
    write_depth_png,
)
from lightning_hpml.datamodules.panorama import D3D60DataModule, Matterport3DDataModule, Stanford2D3DDataModule
from lightning_hpml.datamodules.synthetic.output_tree import item_rng
from lightning_hpml.datamodules.synthetic.panorama_room import random_room, render_panorama
from lightning_hpml.datamodules.synthetic.panorama_writer import write_panorama_dataset

MODULES = {"stanford2d3d": Stanford2D3DDataModule, "matterport3d": Matterport3DDataModule, "3d60": D3D60DataModule}
# worst read-back error of each encoding: half a stored unit (16-bit PNGs), float32 (EXR)
TOLERANCE = {"stanford2d3d": 0.5 / 512 + 1e-6, "matterport3d": 0.5 / 4000 + 1e-6, "3d60": 1e-6}


@pytest.mark.parametrize("layout", list(MODULES))
def test_generator_trees_decode_to_the_rendered_depth(tmp_path, layout):
    root = write_panorama_dataset(tmp_path / layout, layout, counts=(2, 1, 1), height=32, width=64, seed=3)
    dm = MODULES[layout](root=str(root), batch_size=1, augment=False)
    dm.setup("fit")
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [
        2,
        2 if layout == "stanford2d3d" else 1,
        1 + (layout == "stanford2d3d"),
    ]
    batch = next(iter(dm.test_dataloader()))  # Stanford2D3D: area_5a (the test item) comes first
    assert batch["image"].shape == (1, 3, 32, 64) and batch["valid"].dtype == torch.bool
    test_index = 3  # the writer numbers items over train, val, test
    _, expected = render_panorama(random_room(item_rng(3, f"{layout}/{test_index}")), 32, 64)
    assert batch["valid"].all()  # every ray of a closed room hits a wall within 10 m
    assert (batch["depth"][0, 0].numpy() - expected).__abs__().max() <= TOLERANCE[layout]


def test_depth_beyond_max_depth_and_missing_values_are_invalid(tmp_path):
    depth = np.array([[1.0, 9.5], [12.0, 3.0]], dtype=np.float32)
    valid = np.array([[True, True], [True, False]])
    write_depth_png(tmp_path / "d.png", depth, valid, 512, 65535)
    read, ok = read_depth_png(tmp_path / "d.png", 512, 65535)
    assert ok.tolist() == valid.tolist() and read[1, 1] == 0
    write_depth_exr(tmp_path / "d.exr", depth, valid)
    read, ok = read_depth_exr(tmp_path / "d.exr")
    assert ok.tolist() == valid.tolist() and read[0, 1] == pytest.approx(9.5)
    root = write_panorama_dataset(tmp_path / "s", "stanford2d3d", counts=(1, 1, 1), height=16, width=32)
    dm = Stanford2D3DDataModule(root=str(root), max_depth=2.0, augment=False)
    dm.setup("test")
    item = dm.datasets["test"][0]
    assert (item["depth"][item["valid"]] <= 2.0).all() and (item["depth"][~item["valid"]] == 0).all()
    assert not item["valid"].all()


def test_malformed_files_and_missing_data_raise_clear_errors(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "eight.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(PanoramaDepthFormatError, match="eight.png: is a 8-bit"):
        read_depth_png(tmp_path / "eight.png", 512, 65535)
    with pytest.raises(ValueError, match="do not fit a 16-bit PNG"):
        write_depth_png(tmp_path / "far.png", np.full((2, 2), 200.0), np.ones((2, 2), bool), 512, 65535)
    with pytest.raises(FileNotFoundError, match="no panoramas found"):
        Stanford2D3DDataModule(root=str(tmp_path)).setup("fit")
    (tmp_path / "3d60_train.txt").write_text("only_one_field.png\n")
    with pytest.raises(ValueError, match="3d60_train.txt:1: expected '<rgb path> <depth path>'"):
        D3D60DataModule(root=str(tmp_path)).setup("fit")
    with pytest.raises(FileNotFoundError, match="scenes_train.txt"):
        Matterport3DDataModule(root=str(tmp_path)).setup("fit")


def test_training_augmentation_rolls_image_and_depth_together(tmp_path):
    root = write_panorama_dataset(tmp_path / "m", "matterport3d", counts=(1, 1, 1), height=16, width=32)
    plain = Matterport3DDataModule(root=str(root), augment=False)
    rolled = Matterport3DDataModule(root=str(root), augment=True)
    plain.setup("fit")
    rolled.setup("fit")
    torch.manual_seed(0)
    a, b = plain.datasets["train"][0], rolled.datasets["train"][0]
    matches = [
        shift
        for shift in range(32)
        for flip in (False, True)
        if torch.equal((a["depth"].flip(-1) if flip else a["depth"]).roll(shift, -1), b["depth"])
        and torch.equal((a["image"].flip(-1) if flip else a["image"]).roll(shift, -1), b["image"])
    ]
    assert matches  # one yaw rotation (and maybe a flip) applied to both
