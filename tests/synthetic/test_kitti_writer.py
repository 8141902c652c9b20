"""Synthetic KITTI 2012/2015 trees: layout, default counts, LiDAR-like sparse ground truth, noc within occ."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lightning_hpml.datamodules.formats import read_kitti_disparity, read_rgb
from lightning_hpml.datamodules.synthetic import kitti_writer, write_kitti_stereo
from lightning_hpml.datamodules.synthetic.kitti_writer import KITTI_REAL_COUNTS, lidar_like_mask
from lightning_hpml.datamodules.synthetic.output_tree import README_NAME

SIZE = {"height": 48, "width": 128, "max_disparity": 24.0}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def kitti2015(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kitti_stereo(
        tmp_path_factory.mktemp("k15") / "kitti", year=2015, num_train=4, num_test=2, seed=1, **SIZE
    )


def test_2015_layout(kitti2015: Path) -> None:
    training, testing = kitti2015 / "training", kitti2015 / "testing"
    assert _names(training) == ["disp_noc_0", "disp_occ_0", "image_2", "image_3", "obj_map"]
    assert _names(testing) == ["image_2", "image_3"]
    frames = [f"{i:06d}_{s}.png" for i in range(4) for s in ("10", "11")]
    for folder in ("image_2", "image_3"):
        assert _names(training / folder) == frames
        assert _names(testing / folder) == [f"{i:06d}_{s}.png" for i in range(2) for s in ("10", "11")]
    for folder in ("disp_occ_0", "disp_noc_0", "obj_map"):
        assert _names(training / folder) == [f"{i:06d}_10.png" for i in range(4)]
    image = read_rgb(training / "image_2/000000_10.png")
    assert image.shape == (48, 128, 3)
    # The _11 frame is the same scene with objects moved: similar, not identical.
    nxt = read_rgb(training / "image_2/000000_11.png")
    assert 0 < np.abs(image.astype(int) - nxt.astype(int)).mean() < 60
    assert (kitti2015 / README_NAME).read_text().startswith("SYNTHETIC DATA")


def test_2015_ground_truth_is_sparse_lidar_like_and_noc_within_occ(kitti2015: Path) -> None:
    fractions = []
    for i in range(4):
        occ, occ_valid = read_kitti_disparity(kitti2015 / f"training/disp_occ_0/{i:06d}_10.png")
        noc, noc_valid = read_kitti_disparity(kitti2015 / f"training/disp_noc_0/{i:06d}_10.png")
        assert not (noc_valid & ~occ_valid).any(), "disp_noc must be a subset of disp_occ"
        assert noc_valid.sum() < occ_valid.sum(), "occluded pixels must be removed from disp_noc"
        np.testing.assert_array_equal(noc[noc_valid], occ[noc_valid])
        assert not occ_valid[: int(0.25 * 48)].any(), "no ground truth in the top rows"
        lower, upper = occ_valid[24:].mean(), occ_valid[:24].mean()
        assert lower > upper
        values = occ[occ_valid]
        assert values.min() >= 24.0 / 20 - 1 / 256 and values.max() <= 24.0 + 1 / 256
        fractions.append(occ_valid.mean())
    assert 0.25 < np.mean(fractions) < 0.45, fractions
    obj = cv2.imread(str(kitti2015 / "training/obj_map/000000_10.png"), cv2.IMREAD_UNCHANGED)
    assert obj.dtype == np.uint8 and obj.shape == (48, 128)
    assert (obj > 0).any() and (obj == 0).any()


def test_2012_layout_uses_its_own_folder_names(tmp_path: Path) -> None:
    root = write_kitti_stereo(tmp_path / "k12", year=2012, num_train=2, num_test=1, **SIZE)
    assert _names(root / "training") == ["colored_0", "colored_1", "disp_noc", "disp_occ"]
    assert _names(root / "testing") == ["colored_0", "colored_1"]
    assert _names(root / "training/disp_occ") == ["000000_10.png", "000001_10.png"]
    assert _names(root / "testing/colored_1") == ["000000_10.png", "000000_11.png"]
    disparity, valid = read_kitti_disparity(root / "training/disp_noc/000001_10.png")
    assert valid.any() and (disparity[~valid] == 0).all()


@pytest.mark.parametrize("year", [2015, 2012])
def test_default_counts_are_the_real_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, year: int) -> None:
    # Render one tiny pair and reuse it: this test is about how many files are written, not their content.
    rig = kitti_writer.StereoRig(height=8, width=24, focal=24.0)
    scene = kitti_writer.random_scene(rig, np.random.default_rng(0), min_disparity=1.0, max_disparity=4.0)
    render = kitti_writer.render_scene(scene, rig)
    monkeypatch.setattr(kitti_writer, "random_scene", lambda *args, **kwargs: scene)
    monkeypatch.setattr(kitti_writer, "render_scene", lambda *args, **kwargs: render)
    root = write_kitti_stereo(tmp_path / "k", year=year, height=8, width=24, max_disparity=4.0)
    left = "image_2" if year == 2015 else "colored_0"
    num_train, num_test = KITTI_REAL_COUNTS[year]
    assert len(list((root / "training" / left).glob("*_10.png"))) == num_train
    assert len(list((root / "testing" / left).glob("*_10.png"))) == num_test
    assert KITTI_REAL_COUNTS == {2015: (200, 200), 2012: (194, 195)}


def test_lidar_like_mask_statistics() -> None:
    mask = lidar_like_mask(np.random.default_rng(0), 120, 400)
    assert not mask[:36].any()
    assert 0.28 < mask.mean() < 0.4
    assert mask[-20:].mean() > mask[40:60].mean()


def test_refuses_non_empty_root_and_bad_arguments(tmp_path: Path) -> None:
    root = write_kitti_stereo(tmp_path / "k", num_train=1, num_test=1, **SIZE)
    with pytest.raises(FileExistsError, match=str(root)):
        write_kitti_stereo(root, num_train=1, num_test=1, **SIZE)
    write_kitti_stereo(root, num_train=2, num_test=1, overwrite=True, **SIZE)
    assert _names(root / "training/disp_occ_0") == ["000000_10.png", "000001_10.png"]
    with pytest.raises(ValueError, match="year"):
        write_kitti_stereo(tmp_path / "x", year=2013, **SIZE)
    with pytest.raises(ValueError, match="max_disparity"):
        write_kitti_stereo(tmp_path / "x", height=48, width=400, max_disparity=300.0)
    with pytest.raises(ValueError, match="num_train"):
        write_kitti_stereo(tmp_path / "x", num_train=0, **SIZE)
    assert not (tmp_path / "x").exists()
