"""KITTIStereoDataModule on synthetic KITTI 2012/2015 trees written in the real layout (real pair counts)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.formats import read_kitti_disparity, read_rgb
from lightning_hpml.datamodules.stereo import KITTIStereoDataModule
from lightning_hpml.datamodules.stereo.kitti import FADNET_KITTI2015_VAL_INDICES
from lightning_hpml.datamodules.synthetic import write_kitti_stereo
from lightning_hpml.datamodules.synthetic.cached_tree import SYNTHETIC_MARKER

HEIGHT, WIDTH = 32, 64
TREE = {"height": HEIGHT, "width": WIDTH, "anti_alias": 1}


@pytest.fixture(scope="module")
def kitti2015(tmp_path_factory) -> Path:
    return write_kitti_stereo(tmp_path_factory.mktemp("kitti2015") / "root", year=2015, **TREE)


@pytest.fixture(scope="module")
def kitti2012(tmp_path_factory) -> Path:
    return write_kitti_stereo(tmp_path_factory.mktemp("kitti2012") / "root", year=2012, **TREE)


@pytest.fixture(scope="module")
def small2015(tmp_path_factory) -> Path:
    return write_kitti_stereo(tmp_path_factory.mktemp("small") / "root", year=2015, num_train=12, num_test=2, **TREE)


def _module(root: Path | None, **kwargs) -> KITTIStereoDataModule:
    kwargs.setdefault("crop_size", (16, 32))
    kwargs.setdefault("num_workers", 0)
    kwargs.setdefault("batch_size", 2)
    return KITTIStereoDataModule(root=None if root is None else str(root), **kwargs)


def _setup_all(dm: KITTIStereoDataModule) -> dict[str, int]:
    for stage in ("fit", "test", "predict"):
        dm.setup(stage)
    return {split: len(ds) for split, ds in dm.datasets.items()}


def test_kitti2015_fadnet_split(kitti2015):
    dm = _module(kitti2015)
    assert _setup_all(dm) == {"train": 180, "val": 20, "test": 20, "predict": 200}
    val_names = [s.name for s in dm.datasets["val"].samples]
    assert val_names == [f"disp_0/{i:06d}_10" for i in FADNET_KITTI2015_VAL_INDICES]
    assert [s.name for s in dm.datasets["test"].samples] == val_names  # test stage = the labelled val frames
    train_names = {s.name for s in dm.datasets["train"].samples}
    assert not train_names & set(val_names) and len(train_names | set(val_names)) == 200
    sample = dm.datasets["val"].samples[0]
    assert sample.left == kitti2015 / "training/image_2/000001_10.png"
    assert sample.right == kitti2015 / "training/image_3/000001_10.png"
    assert sample.disparity == kitti2015 / "training/disp_occ_0/000001_10.png"
    predict = dm.datasets["predict"].samples
    assert predict[0].left == kitti2015 / "testing/image_2/000000_10.png" and predict[0].disparity is None
    assert predict[-1].name == "disp_0/000199_10"
    assert dm.disparity_format == "kitti_png"


def test_kitti2012_fadnet_split(kitti2012):
    dm = _module(kitti2012, year=2012)
    assert _setup_all(dm) == {"train": 180, "val": 14, "test": 14, "predict": 195}
    assert [s.name for s in dm.datasets["val"].samples] == [f"disp_0/{i:06d}_10" for i in range(180, 194)]
    assert dm.datasets["train"].samples[-1].name == "disp_0/000179_10"
    assert dm.datasets["val"].samples[0].left == kitti2012 / "training/colored_0/000180_10.png"
    assert dm.datasets["val"].samples[0].disparity == kitti2012 / "training/disp_occ/000180_10.png"
    assert dm.datasets["predict"].samples[0].right == kitti2012 / "testing/colored_1/000000_10.png"


def test_trainval_and_val_indices_override(kitti2015):
    dm = _module(kitti2015, split="trainval")
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (200, 20)
    dm = _module(kitti2015, val_indices=[7, 0, 150])
    dm.setup("fit")
    assert [s.name for s in dm.datasets["val"].samples] == ["disp_0/000000_10", "disp_0/000007_10", "disp_0/000150_10"]
    assert len(dm.datasets["train"]) == 197
    with pytest.raises(ValueError, match=r"\[200\] are not among the 200 training frames"):
        _module(kitti2015, val_indices=[3, 200]).setup("fit")
    with pytest.raises(ValueError, match="val_indices"):
        _module(kitti2015, val_indices=[3, 3])


def test_default_val_frames_missing_from_a_small_tree(small2015):
    with pytest.raises(ValueError, match=r"FADNet's KITTI 2015 val frames \[26, .*pass `val_indices`"):
        _module(small2015).setup("fit")
    dm = _module(small2015, val_indices=[1, 6])
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (10, 2)


def test_valid_mask_matches_sparse_ground_truth(kitti2015):
    dm = _module(kitti2015, max_disp=6)
    dm.setup("validate")
    dataset = dm.datasets["val"]
    fractions = []
    for index in (0, 7):
        item, sample = dataset[index], dataset.samples[index]
        gt, stored = read_kitti_disparity(sample.disparity)
        expected = stored & (gt > 0) & (gt < 6)
        assert 0 < (expected.sum() / stored.sum()) < 1  # max_disp cuts some pixels
        np.testing.assert_array_equal(item["valid"][0].numpy(), expected)
        np.testing.assert_array_equal(item["disparity"][0].numpy(), np.where(expected, gt, 0))
        np.testing.assert_allclose(item["left"].permute(1, 2, 0).numpy() * 255, read_rgb(sample.left), atol=1e-3)
        fractions.append(stored.mean())
        assert not stored[: HEIGHT // 4].any()  # like LiDAR: nothing at the top
    assert all(0.1 < f < 0.7 for f in fractions)  # sparse
    # Non-occluded ground truth is a strict subset of the all-pixels one.
    occ, noc = _module(kitti2015, gt="occ"), _module(kitti2015, gt="noc")
    occ.setup("validate")
    noc.setup("validate")
    assert noc.datasets["val"].samples[0].disparity == kitti2015 / "training/disp_noc_0/000001_10.png"
    v_occ = torch.stack([occ.datasets["val"][i]["valid"] for i in range(5)])
    v_noc = torch.stack([noc.datasets["val"][i]["valid"] for i in range(5)])
    assert not (v_noc & ~v_occ).any() and v_noc.sum() < v_occ.sum()


def test_train_batches_crop_below_the_top_quarter(kitti2015):
    dm = _module(kitti2015, augment=False, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["left"].shape == batch["right"].shape == (4, 3, 16, 32)
    assert batch["disparity"].shape == batch["valid"].shape == (4, 1, 16, 32)
    assert batch["valid"].any()
    dataset = dm.datasets["train"]
    tops = set()
    for epoch in range(6):
        item = dataset[(epoch, 3)]
        full = dataset.load(3)["left"]
        offsets = [
            (t, x)
            for t in range(HEIGHT - 16 + 1)
            for x in range(WIDTH - 32 + 1)
            if torch.equal(full[:, t : t + 16, x : x + 32], item["left"])
        ]
        assert offsets, "the crop must be a window of the image"
        tops.add(offsets[0][0])
    assert min(tops) >= math.ceil(0.25 * HEIGHT)


def test_predict_batches_have_no_ground_truth(kitti2015):
    dm = _module(kitti2015)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert set(batch) == {"left", "right", "name", "index"}
    assert batch["name"] == ["disp_0/000000_10"] and batch["left"].shape == (1, 3, HEIGHT, WIDTH)


@pytest.mark.parametrize("victim", ["training/image_3/000004_10.png", "training/disp_occ_0/000009_10.png"])
def test_incomplete_tree_names_the_missing_file(small2015, tmp_path, victim):
    root = Path(shutil.copytree(small2015, tmp_path / "copy"))
    (root / victim).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of .* missing") as err:
        _module(root, val_indices=[1, 6]).setup("fit")
    assert str(root / victim) in str(err.value) and "image_3" in str(err.value)


def test_missing_root_and_wrong_year(tmp_path, small2015):
    with pytest.raises(FileNotFoundError) as err:
        _module(tmp_path / "absent").setup("fit")
    message = str(err.value)
    assert "does not exist" in message
    for folder in ("image_2", "image_3", "disp_occ_0", "testing"):
        assert folder in message
    with pytest.raises(FileNotFoundError, match=r"colored_0.*is this KITTI 2015 \(year=2015\)"):
        _module(small2015, year=2012, val_indices=[1]).setup("fit")


def test_invalid_arguments():
    with pytest.raises(ValueError, match="year"):
        KITTIStereoDataModule(year=2013)
    with pytest.raises(ValueError, match="gt"):
        KITTIStereoDataModule(gt="all")
    with pytest.raises(ValueError, match="split"):
        KITTIStereoDataModule(split="all")
    with pytest.raises(ValueError, match="val_indices"):
        KITTIStereoDataModule(val_indices=[-1])


def test_defaults_follow_fadnet_fine_tuning():
    dm = KITTIStereoDataModule()
    assert dm.crop_size == (256, 512) and dm.min_top_fraction == 0.25 and dm.eval_batch_size == 1
    assert dm.hparams["year"] == 2015 and dm.hparams["split"] == "fadnet" and dm.hparams["crop_size"] == (256, 512)


def test_root_none_generates_once_and_reuses(tmp_path, monkeypatch):
    options = {"num_train": 8, "num_test": 2, **TREE}
    target = tmp_path / "synthetic"
    dm = _module(None, year=2012, synthetic_dir=str(target), synthetic_options=options, val_indices=[0, 1])
    dm.prepare_data()
    assert (target / SYNTHETIC_MARKER).is_file() and (target / "training/colored_0/000007_10.png").is_file()
    _setup_all(dm)
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 6, "val": 2, "test": 2, "predict": 2}

    def fail(*args, **kwargs):
        raise AssertionError("the complete synthetic tree should have been reused")

    again = _module(None, year=2012, synthetic_dir=str(target), synthetic_options=options, val_indices=[0, 1])
    monkeypatch.setattr(again, "write_synthetic", fail)
    again.prepare_data()
    again.setup("validate")
    assert len(again.datasets["val"]) == 2
    # The year is part of the writer options: a 2015 module does not take the 2012 tree.
    with pytest.raises(FileExistsError):
        _module(None, year=2015, synthetic_dir=str(target), synthetic_options=options).prepare_data()


def test_default_synthetic_size_fits_the_crop():
    dm = KITTIStereoDataModule(crop_size=(64, 128))
    options = dm.resolved_synthetic_options()
    assert options["year"] == 2015 and options["height"] >= 64 and options["width"] >= 128
