"""SceneFlowDataModule on small synthetic Scene Flow trees written in the real layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.formats import read_pfm, read_rgb
from lightning_hpml.datamodules.stereo import SceneFlowDataModule, StereoDataset
from lightning_hpml.datamodules.stereo.base import stereo_collate
from lightning_hpml.datamodules.synthetic import write_sceneflow
from lightning_hpml.datamodules.synthetic.cached_tree import SYNTHETIC_MARKER

HEIGHT, WIDTH = 64, 128
# Writer counts: FT3D TRAIN 3 letters x 1 sequence x 2 frames, TEST 2 sequences x 2 frames; Monkaa 1 scene x 2
# frames; Driving always 8 folders x 2 frames.
N_FT3D_TRAIN, N_FT3D_TEST, N_MONKAA, N_DRIVING = 6, 4, 2, 16


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_sceneflow(
        tmp_path_factory.mktemp("sceneflow") / "root",
        subsets=("FlyingThings3D", "Monkaa", "Driving"),
        num_sequences=1,
        num_test_sequences=2,
        frames_per_sequence=2,
        height=HEIGHT,
        width=WIDTH,
        passes=("cleanpass", "finalpass"),
        anti_alias=1,
    )


def _module(root: Path | None, **kwargs) -> SceneFlowDataModule:
    kwargs.setdefault("crop_size", (32, 64))
    kwargs.setdefault("num_workers", 0)
    kwargs.setdefault("batch_size", 2)
    return SceneFlowDataModule(root=None if root is None else str(root), **kwargs)


def _copy(tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "copy"))


def test_official_split_counts_and_names(tree):
    dm = _module(tree)
    for stage in ("fit", "test", "predict"):
        dm.setup(stage)
    counts = {split: len(ds) for split, ds in dm.datasets.items()}
    assert counts == {
        "train": N_FT3D_TRAIN + N_MONKAA + N_DRIVING,
        "val": N_FT3D_TEST,
        "test": N_FT3D_TEST,
        "predict": N_FT3D_TEST,
    }
    train_names = [s.name for s in dm.datasets["train"].samples]
    assert sum(n.startswith("FlyingThings3D/TRAIN/") for n in train_names) == N_FT3D_TRAIN
    assert sum(n.startswith("Monkaa/") for n in train_names) == N_MONKAA
    assert sum(n.startswith("Driving/") for n in train_names) == N_DRIVING
    assert "FlyingThings3D/TEST/A/0000/left/0006" in [s.name for s in dm.datasets["val"].samples]
    first = dm.datasets["val"].samples[0]
    assert first.left == tree / "FlyingThings3D/frames_cleanpass/TEST/A/0000/left/0006.png"
    assert first.right == tree / "FlyingThings3D/frames_cleanpass/TEST/A/0000/right/0006.png"
    assert first.disparity == tree / "FlyingThings3D/disparity/TEST/A/0000/left/0006.pfm"
    assert dm.disparity_format == "pfm"


def test_subset_selection(tree):
    dm = _module(tree, subsets=("FlyingThings3D",))
    dm.setup("fit")
    assert len(dm.datasets["train"]) == N_FT3D_TRAIN
    dm = _module(tree, subsets=("Monkaa", "Driving"))
    assert len(dm.parse("train")) == N_MONKAA + N_DRIVING
    with pytest.raises(ValueError, match="val_list"):
        dm.setup("validate")


def test_list_files_give_the_same_samples_as_scanning(tree):
    scanned = _module(tree)
    test_list = str(tree / "lists/FlyingThings3D_release_TEST.list")  # absolute; the train list is root-relative
    listed = _module(tree, train_list="lists/sceneflow_train.list", val_list=test_list)
    for split in ("train", "val"):
        assert sorted(listed.parse(split), key=lambda s: s.name) == sorted(scanned.parse(split), key=lambda s: s.name)
    with pytest.raises(FileNotFoundError, match=r"nope\.list"):
        _module(tree, train_list="nope.list").parse("train")


def test_train_batch_keys_shapes_ranges(tree):
    dm = _module(tree, batch_size=3, max_disp=192)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"left", "right", "disparity", "valid", "name", "index"}
    for key in ("left", "right"):
        assert batch[key].shape == (3, 3, 32, 64) and batch[key].dtype == torch.float32
        assert 0 <= batch[key].min() and batch[key].max() <= 1
    assert batch["disparity"].shape == batch["valid"].shape == (3, 1, 32, 64)
    assert batch["disparity"].dtype == torch.float32 and batch["valid"].dtype == torch.bool
    assert (batch["disparity"][~batch["valid"]] == 0).all() and (batch["disparity"][batch["valid"]] > 0).all()
    assert len(batch["name"]) == 3 and batch["index"].dtype == torch.int64
    # drop_last: 24 samples / batch 5 -> 4 full batches
    dm5 = _module(tree, batch_size=5)
    dm5.setup("fit")
    assert [b["left"].shape[0] for b in dm5.train_dataloader()] == [5, 5, 5, 5]


def test_val_items_match_files_and_max_disp_mask(tree):
    dm = _module(tree, max_disp=10)
    dm.setup("validate")
    dataset = dm.datasets["val"]
    item = dataset[1]
    sample = dataset.samples[1]
    assert item["name"] == sample.name and item["index"] == 1
    assert item["left"].shape == (3, HEIGHT, WIDTH)  # no crop at evaluation
    np.testing.assert_allclose(item["left"].permute(1, 2, 0).numpy() * 255, read_rgb(sample.left), atol=1e-3)
    np.testing.assert_allclose(item["right"].permute(1, 2, 0).numpy() * 255, read_rgb(sample.right), atol=1e-3)
    gt = read_pfm(sample.disparity)
    expected_valid = np.isfinite(gt) & (gt > 0) & (gt < 10)
    assert 0 < expected_valid.mean() < 1  # the limit really cuts
    np.testing.assert_array_equal(item["valid"][0].numpy(), expected_valid)
    np.testing.assert_array_equal(item["disparity"][0].numpy(), np.where(expected_valid, gt, 0))
    # max_disp=None keeps every positive finite value.
    unlimited = _module(tree, max_disp=None)
    unlimited.setup("validate")
    assert unlimited.datasets["val"][1]["valid"].all()


def test_finalpass_reads_frames_finalpass(tree):
    dm = _module(tree, render_pass="finalpass")
    dm.setup("validate")
    sample = dm.datasets["val"].samples[0]
    assert "frames_finalpass" in sample.left.parts and sample.name == "FlyingThings3D/TEST/A/0000/left/0006"
    clean = _module(tree)
    clean.setup("validate")
    assert not torch.equal(dm.datasets["val"][0]["left"], clean.datasets["val"][0]["left"])


def test_colour_augmentation_is_independent_per_view(tree):
    full = (HEIGHT, WIDTH)  # the crop is the whole image, so only colour can change
    plain = _module(tree, crop_size=full, augment=False)
    augmented = _module(tree, crop_size=full, augment=True)
    plain.setup("fit")
    augmented.setup("fit")
    raw = plain.datasets["train"].load(0)
    off = plain.datasets["train"][(0, 0)]
    on = augmented.datasets["train"][(0, 0)]
    torch.testing.assert_close(off["left"], raw["left"])
    torch.testing.assert_close(off["right"], raw["right"])
    assert not torch.allclose(on["left"], raw["left"], atol=1e-2)
    assert not torch.allclose(on["right"], raw["right"], atol=1e-2)
    torch.testing.assert_close(on["disparity"], raw["disparity"])
    # Per-channel gain applied to each view: a shared draw would give (nearly) equal gains for the two views.
    gain_left = on["left"].mean((1, 2)) / raw["left"].mean((1, 2))
    gain_right = on["right"].mean((1, 2)) / raw["right"].mean((1, 2))
    assert (gain_left - gain_right).abs().max() > 0.02


def test_augmentation_is_keyed_by_epoch_and_index(tree):
    dm = _module(tree)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    a, b, c = dataset[(0, 5)], dataset[(0, 5)], dataset[(1, 5)]
    torch.testing.assert_close(a["left"], b["left"])
    assert not torch.equal(a["left"], c["left"])
    # Two fresh modules with one seed shuffle alike; the next epoch shuffles differently.
    names = []
    for _ in range(2):
        fresh = _module(tree)
        fresh.setup("fit")
        loader = fresh.train_dataloader()
        names.append([n for batch in loader for n in batch["name"]])
        loader.sampler.set_epoch(1)
        names.append([n for batch in loader for n in batch["name"]])
    assert names[0] == names[2] and names[1] == names[3] and names[0] != names[1]
    assert sorted(names[0]) == sorted(s.name for s in dataset.samples)


def test_eval_loader_batches_equal_sizes(tree):
    dm = _module(tree, eval_batch_size=2)
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert [b["left"].shape[0] for b in batches] == [2, 2]
    assert [n for b in batches for n in b["name"]] == [s.name for s in dm.datasets["test"].samples]  # no shuffle


def test_collate_refuses_mixed_sizes_with_a_hint():
    items = [
        {"left": torch.zeros(3, 8, 8), "right": torch.zeros(3, 8, 8), "name": "a", "index": 0},
        {"left": torch.zeros(3, 8, 10), "right": torch.zeros(3, 8, 10), "name": "b", "index": 1},
    ]
    with pytest.raises(ValueError, match="eval_batch_size=1"):
        stereo_collate(items)


def test_crop_larger_than_image_names_file(tree):
    dm = _module(tree, crop_size=(HEIGHT + 1, WIDTH))
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"crop_size=\(65, 128\).*\(64, 128\)") as err:
        dm.datasets["train"][0]
    assert str(dm.datasets["train"].samples[0].left) in str(err.value)


def test_missing_root_lists_accepted_folders(tmp_path):
    dm = _module(tmp_path / "absent")
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    accepted = ("FlyingThings3D", "FlyingThings3D_release", "Monkaa", "monkaa_release", "Driving", "driving_release")
    for folder in accepted:
        assert folder in message


def test_missing_subset_names_both_folder_names(tree, tmp_path):
    root = _copy(tree, tmp_path)
    shutil.rmtree(root / "Monkaa")
    with pytest.raises(FileNotFoundError, match=r"'Monkaa'.*Monkaa.*monkaa_release"):
        _module(root).setup("fit")
    _module(root, subsets=("FlyingThings3D", "Driving")).setup("fit")  # not asked for: fine


def test_fadnet_folder_names_are_accepted(tree, tmp_path):
    root = _copy(tree, tmp_path)
    (root / "FlyingThings3D").rename(root / "FlyingThings3D_release")
    dm = _module(root)
    dm.setup("validate")
    assert dm.datasets["val"].samples[0].name == "FlyingThings3D/TEST/A/0000/left/0006"


@pytest.mark.parametrize("victim", ["right", "disparity"])
def test_incomplete_tree_names_the_missing_file(tree, tmp_path, victim):
    root = _copy(tree, tmp_path)
    if victim == "right":
        missing = root / "Driving/frames_cleanpass/35mm_focallength/scene_backwards/fast/right/0002.png"
    else:
        missing = root / "FlyingThings3D/disparity/TEST/A/0001/left/0007.pfm"
    missing.unlink()
    dm = _module(root)
    with pytest.raises(FileNotFoundError, match=r"1 of .* files are missing") as err:
        dm.setup("fit")
    assert str(missing) in str(err.value) and "frames_<pass>" in str(err.value)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="subsets"):
        SceneFlowDataModule(subsets=("Sintel",))
    with pytest.raises(ValueError, match="render_pass"):
        SceneFlowDataModule(render_pass="albedo")
    with pytest.raises(ValueError, match="batch_size"):
        SceneFlowDataModule(batch_size=0)
    with pytest.raises(ValueError, match="crop_size"):
        SceneFlowDataModule(crop_size=(0, 64))


def test_hyperparameters_include_base_and_subclass_arguments(tree):
    dm = _module(tree, render_pass="finalpass", subsets=("FlyingThings3D",))
    assert dm.hparams["render_pass"] == "finalpass" and dm.hparams["subsets"] == ("FlyingThings3D",)
    assert dm.hparams["crop_size"] == (32, 64) and dm.hparams["root"] == str(tree) and dm.hparams["seed"] == 0


def test_too_few_training_samples_for_a_batch(tree):
    dm = _module(tree, subsets=("FlyingThings3D",), batch_size=7)
    dm.setup("fit")
    with pytest.raises(ValueError, match="fewer than batch_size=7"):
        dm.train_dataloader()


SMALL = {
    "subsets": ("FlyingThings3D",),
    "num_sequences": 1,
    "num_test_sequences": 1,
    "frames_per_sequence": 2,
    "height": HEIGHT,
    "width": WIDTH,
    "anti_alias": 1,
}


def test_root_none_generates_once_and_reuses(tmp_path, monkeypatch):
    target = tmp_path / "synthetic"
    dm = _module(None, synthetic_dir=str(target), synthetic_options=SMALL, subsets=("FlyingThings3D",))
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        dm.setup("fit")
    dm.prepare_data()
    assert (target / SYNTHETIC_MARKER).is_file() and (target / "FlyingThings3D/frames_cleanpass/TRAIN").is_dir()
    assert not (target / "FlyingThings3D/frames_finalpass").exists()  # only the pass in use is written
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # no temporary folder left behind
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 6 and len(dm.datasets["val"]) == 2
    assert dm.data_root == target

    def fail(*args, **kwargs):
        raise AssertionError("the complete synthetic tree should have been reused")

    again = _module(None, synthetic_dir=str(target), synthetic_options=SMALL, subsets=("FlyingThings3D",))
    monkeypatch.setattr(again, "write_synthetic", fail)
    again.prepare_data()
    again.setup("validate")
    assert isinstance(again.datasets["val"], StereoDataset)
    # Other options into the same folder: refused, nothing deleted.
    other = _module(
        None, synthetic_dir=str(target), synthetic_options={**SMALL, "seed": 3}, subsets=("FlyingThings3D",)
    )
    with pytest.raises(FileExistsError, match="not a complete synthetic tree"):
        other.prepare_data()
    assert (target / SYNTHETIC_MARKER).is_file()


def test_root_none_default_cache_is_keyed_by_options(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a = _module(None, synthetic_options=SMALL, subsets=("FlyingThings3D",))
    b = _module(None, synthetic_options=SMALL, subsets=("FlyingThings3D",))
    c = _module(None, synthetic_options={**SMALL, "height": 48}, subsets=("FlyingThings3D",))
    assert a.data_root == b.data_root != c.data_root
    assert a.data_root.parent == tmp_path / "cache/lightning_hpml/synthetic"
    assert a.data_root.name.startswith("sceneflow-")
    a.prepare_data()
    b.setup("validate")  # b finds a's tree
    assert len(b.datasets["val"]) == 2
