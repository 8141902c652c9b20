"""IRS: synthetic writer in the real layout, exact normals through the loader, list styles, the normal convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.formats import read_exr, read_exr_channels
from lightning_hpml.datamodules.stereo import IRSDataModule
from lightning_hpml.datamodules.stereo.irs import (
    decode_irs_normal,
    orient_normals_to_camera,
    read_irs_list,
    read_irs_normal,
)
from lightning_hpml.datamodules.stereo.transforms import StereoTrainTransform
from lightning_hpml.datamodules.synthetic import write_irs
from lightning_hpml.datamodules.synthetic.irs_writer import IRS_FOCAL, render_irs_frame
from lightning_hpml.datamodules.synthetic.output_tree import item_rng
from lightning_hpml.datamodules.synthetic.random_scene import default_min_disparity

H, W = 64, 128
OPTIONS = {"height": H, "width": W, "frames_per_scene": 2, "seed": 3}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_irs(tmp_path_factory.mktemp("irs") / "IRSDataset", **OPTIONS)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def test_tree_has_the_real_layout_and_lists(tree: Path):
    for category in ("Home", "Office", "Restaurant", "Store"):
        scenes = [p for p in (tree / category).iterdir() if p.is_dir()]
        assert len(scenes) == 1
        names = sorted(p.name for p in scenes[0].iterdir())
        assert names == [
            f"{k}_{i:05d}.{e}" for k, e in (("d", "exr"), ("l", "png"), ("n", "exr"), ("r", "png")) for i in (1, 2)
        ]
    train = (tree / "lists/irs_train.list").read_text().splitlines()
    test = (tree / "lists/irs_test.list").read_text().splitlines()
    assert len(train) == 6 and len(test) == 2 and not set(train) & set(test)
    left, _right, disp, normal = train[0].split()
    assert left.startswith("Home/") and left.endswith("/l_00001.png") and normal.endswith("/n_00001.exr")
    assert read_exr_channels(tree / disp) == {"G": "FLOAT"}  # single G channel, as IRS's files
    assert sorted(read_exr_channels(tree / normal)) == ["B", "G", "R"]
    encoded = read_exr(tree / normal)
    assert encoded.min() >= 0.0 and encoded.max() <= 1.0  # stored as (n + 1) / 2


def test_loaded_normals_match_the_geometry_to_1e_3_degree(tree: Path):
    line = (tree / "lists/irs_train.list").read_text().splitlines()[0]
    folder = line.split()[0].rsplit("/", 1)[0]
    render = render_irs_frame(
        H, W, max_disparity=W / 6.0, min_disparity=default_min_disparity(W / 6.0), seed=item_rng(3, f"{folder}/00001")
    )
    normal, valid = read_irs_normal(tree / line.split()[3])
    assert valid.all()
    err = _angle_deg(normal.astype(np.float64), render.normal_left.astype(np.float64))
    assert err.max() < 1e-3, err.max()
    # The writer's disparity is the renderer's, bit for bit.
    np.testing.assert_array_equal(read_exr(tree / line.split()[2]), render.disparity_left)


def test_renderer_normals_agree_with_the_3d_points_of_the_disparity():
    """Independent check of the geometry: normals from cross products of back-projected neighbours."""
    render = render_irs_frame(96, 160, max_disparity=30.0, min_disparity=3.0, seed=11)
    f, b = IRS_FOCAL, 0.1
    z = f * b / render.disparity_left.astype(np.float64)
    ys, xs = np.mgrid[0:96, 0:160].astype(np.float64)
    points = np.stack([(xs - 79.5) / f * z, (ys - 47.5) / f * z, z], axis=-1)
    du = points[1:-1, 2:] - points[1:-1, :-2]
    dv = points[2:, 1:-1] - points[:-2, 1:-1]
    estimate = np.cross(du, dv)
    estimate = np.where((estimate * points[1:-1, 1:-1]).sum(-1, keepdims=True) > 0, -estimate, estimate)
    n = render.normal_left.astype(np.float64)
    same_plane = np.ones((94, 158), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same_plane &= (n[1 + dy : 95 + dy, 1 + dx : 159 + dx] == n[1:-1, 1:-1]).all(-1)
    assert same_plane.mean() > 0.5
    err = _angle_deg(estimate[same_plane], n[1:-1, 1:-1][same_plane])
    assert np.percentile(err, 99) < 0.05, np.percentile(err, 99)
    # Camera-facing convention: n . ray < 0 everywhere.
    assert ((n * points).sum(-1) < 0).all()


def test_renderer_normals_are_optional():
    from lightning_hpml.datamodules.synthetic import render_stereo_pair

    assert render_stereo_pair(16, 32, max_disparity=4.0, seed=0, anti_alias=1).normal_left is None


def test_decode_and_orientation_convention():
    encoded = np.array([[[0.5, 0.5, 1.0], [0.5, 0.5, 0.0], [1.0, 0.5, 0.5]]], np.float32)  # z+, z-, x+
    decoded = decode_irs_normal(encoded)
    np.testing.assert_array_equal(decoded, [[[0, 0, 1], [0, 0, -1], [1, 0, 0]]])
    oriented = orient_normals_to_camera(decoded, focal=480.0, cx=1.0, cy=0.0)
    # Facing away (+z) is flipped to -z; -z is kept; +x at a pixel right of the centre (ray x > 0) is flipped.
    np.testing.assert_array_equal(oriented, [[[0, 0, -1], [0, 0, -1], [-1, 0, 0]]])


def test_invalid_normals_are_masked(tmp_path: Path):
    from lightning_hpml.datamodules.formats import write_exr

    encoded = np.full((2, 3, 3), 0.5, np.float32)
    encoded[0, 0] = (0.5, 0.5, 0.0)  # valid: (0, 0, -1)
    encoded[0, 1] = (np.nan, 0.5, 0.0)  # not finite
    encoded[0, 2] = (1.5, 0.5, 0.0)  # x = 2: out of [-1, 1]
    encoded[1, 0] = (0.5, 0.5, 0.5)  # zero vector
    encoded[1, 1] = (0.5, 0.5, 1.0)  # (0, 0, 1): valid, flipped to face the camera
    write_exr(tmp_path / "n.exr", encoded)
    normal, valid = read_irs_normal(tmp_path / "n.exr")
    np.testing.assert_array_equal(valid, [[True, False, False], [False, True, False]])
    np.testing.assert_array_equal(normal[~valid], 0.0)
    np.testing.assert_array_equal(normal[1, 1], [0, 0, -1])


def test_datamodule_batches_carry_aligned_normals(tree: Path):
    dm = IRSDataModule(root=str(tree), crop_size=(32, 64), batch_size=2, num_workers=0, augment=False)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 6 and len(dm.datasets["val"]) == 2
    full = dm.datasets["train"].load(0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["normal"].shape == (2, 3, 32, 64) and batch["normal_valid"].shape == (2, 1, 32, 64)
    assert batch["normal_valid"].dtype == torch.bool and batch["normal_valid"].all()
    torch.testing.assert_close(batch["normal"].norm(dim=1), torch.ones(2, 32, 64), atol=1e-5, rtol=0)
    assert (batch["normal"][:, 2] <= 1e-6).float().mean() > 0.9  # mostly n_z < 0 (camera-facing)
    # The crop window is the same for images, disparity and normals: find it in the full sample.
    torch.manual_seed(0)
    crop = StereoTrainTransform((32, 64), color=False)(full)
    hits = [
        (t, l)
        for t in range(H - 31)
        for l in range(W - 63)
        if torch.equal(full["left"][:, t : t + 32, l : l + 64], crop["left"])
    ]
    assert hits
    t, l = hits[0]
    torch.testing.assert_close(crop["normal"], full["normal"][:, t : t + 32, l : l + 64])
    torch.testing.assert_close(crop["disparity"], full["disparity"][:, t : t + 32, l : l + 64])


def test_synthetic_root_none_uses_the_same_loader(tmp_path: Path):
    dm = IRSDataModule(
        root=None,
        synthetic_dir=str(tmp_path / "syn"),
        synthetic_options={"height": 48, "width": 96, "frames_per_scene": 1},
        crop_size=(32, 64),
        num_workers=0,
    )
    dm.prepare_data()
    dm.setup("test")
    item = dm.datasets["test"][0]
    assert item["normal"].shape == (3, 48, 96) and item["normal_valid"].all()


def test_v1_and_three_column_lists(tree: Path, tmp_path: Path):
    lines = (tree / "lists/irs_test.list").read_text().splitlines()
    v1 = tmp_path / "IRS_TEST.list"
    v1.write_text("".join(" ".join(f"IRSDataset/{p}" for p in line.split()) + "\t\n" for line in lines))
    samples, normals = read_irs_list(v1, tree)
    assert [s.left for s in samples] == [tree / line.split()[0] for line in lines]
    assert normals[0] == tree / lines[0].split()[3]
    assert samples[0].name == lines[0].split()[0].removesuffix(".png")
    three = tmp_path / "three.list"
    three.write_text("".join(" ".join(line.split()[:3]) + "\n" for line in lines))
    dm = IRSDataModule(root=str(tree), test_list=str(three), num_workers=0)
    dm.setup("validate")
    item = dm.datasets["val"][0]
    assert "normal" not in item and item["disparity"].shape == (1, H, W)


def test_errors_name_the_problem(tree: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="irs_train.list"):
        IRSDataModule(root=str(tmp_path)).setup("fit")
    bad = tmp_path / "bad.list"
    bad.write_text("a.png b.png\n")
    with pytest.raises(ValueError, match=r"bad.list:1: expected"):
        read_irs_list(bad, tree)
    missing = tmp_path / "missing.list"
    line = (tree / "lists/irs_test.list").read_text().splitlines()[0].split()
    missing.write_text(" ".join([*line[:3], "Home/nowhere/n_00009.exr"]) + "\n")
    with pytest.raises(FileNotFoundError, match="normal files are missing"):
        IRSDataModule(root=str(tree), test_list=str(missing)).setup("test")
    with pytest.raises(ValueError, match="focal"):
        IRSDataModule(focal=0)
