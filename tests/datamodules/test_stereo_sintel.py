"""SintelStereoDataModule on synthetic MPI Sintel trees written in the real layout (23 real scene names)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.formats import FormatError, read_rgb, read_sintel_disparity
from lightning_hpml.datamodules.stereo import SintelStereoDataModule
from lightning_hpml.datamodules.stereo.sintel import SINTEL_VAL_SCENES, SintelSample, read_sintel_mask
from lightning_hpml.datamodules.synthetic import write_sintel_stereo
from lightning_hpml.datamodules.synthetic.cached_tree import SYNTHETIC_MARKER
from lightning_hpml.datamodules.synthetic.output_tree import item_rng
from lightning_hpml.datamodules.synthetic.random_scene import default_max_disparity, default_min_disparity
from lightning_hpml.datamodules.synthetic.sintel_writer import SINTEL_ALL_LIST, SINTEL_SCENE_FRAMES, SINTEL_SCENES
from lightning_hpml.datamodules.synthetic.stereo_scene import render_stereo_pair
from lightning_hpml.modules import create_model
from lightning_hpml.modules.stereo import StereoModule

HEIGHT, WIDTH = 32, 64
TREE = {"height": HEIGHT, "width": WIDTH, "anti_alias": 1}
FOLDERS = ("clean_left", "clean_right", "final_left", "final_right", "disparities", "occlusions", "outofframe")


@pytest.fixture(scope="module")
def sintel(tmp_path_factory) -> Path:
    return write_sintel_stereo(tmp_path_factory.mktemp("sintel") / "root", frames_per_scene=2, **TREE)


def _module(root: Path | None, **kwargs) -> SintelStereoDataModule:
    kwargs.setdefault("crop_size", (16, 32))
    kwargs.setdefault("num_workers", 0)
    kwargs.setdefault("batch_size", 2)
    return SintelStereoDataModule(root=None if root is None else str(root), **kwargs)


def _setup_all(dm: SintelStereoDataModule) -> dict[str, int]:
    for stage in ("fit", "test", "predict"):
        dm.setup(stage)
    return {split: len(ds) for split, ds in dm.datasets.items()}


def test_real_scene_table_has_1064_pairs_in_23_scenes():
    assert len(SINTEL_SCENES) == 23 and sum(SINTEL_SCENE_FRAMES.values()) == 1064
    assert SINTEL_SCENES == tuple(sorted(SINTEL_SCENES))
    assert set(SINTEL_VAL_SCENES) <= set(SINTEL_SCENES)
    assert sum(SINTEL_SCENE_FRAMES[s] for s in SINTEL_VAL_SCENES) == 210


def test_writer_layout_and_list(sintel):
    for folder in FOLDERS:
        scenes = sorted(p.name for p in (sintel / "training" / folder).iterdir())
        assert scenes == list(SINTEL_SCENES), folder
        assert sorted(p.name for p in (sintel / "training" / folder / "alley_1").iterdir()) == [
            "frame_0001.png",
            "frame_0002.png",
        ]
    lines = (sintel / SINTEL_ALL_LIST).read_text().splitlines()
    assert len(lines) == 46
    assert lines[0].split() == [
        "training/clean_left/alley_1/frame_0001.png",
        "training/clean_right/alley_1/frame_0001.png",
        "training/disparities/alley_1/frame_0001.png",
    ]
    assert "SYNTHETIC DATA" in (sintel / "SYNTHETIC_README.txt").read_text()


def test_writer_stores_the_renderers_exact_ground_truth(sintel):
    key = "sintel/cave_4/frame_0002"
    render = render_stereo_pair(
        HEIGHT,
        WIDTH,
        max_disparity=float(default_max_disparity(WIDTH)),
        min_disparity=default_min_disparity(default_max_disparity(WIDTH)),
        seed=item_rng(0, key),
        anti_alias=1,
    )
    name = "cave_4/frame_0002.png"
    disparity = read_sintel_disparity(sintel / "training/disparities" / name)
    np.testing.assert_allclose(disparity, render.disparity_left, atol=2.0**-15)
    np.testing.assert_array_equal(read_rgb(sintel / "training/clean_left" / name), render.left)
    occ = read_sintel_mask(sintel / "training/occlusions" / name)
    oof = read_sintel_mask(sintel / "training/outofframe" / name)
    np.testing.assert_array_equal(oof, render.out_of_frame_left)
    np.testing.assert_array_equal(occ | oof, render.occlusion_left)
    assert not (occ & oof).any()  # written disjoint
    raw = cv2.imread(str(sintel / "training/occlusions" / name), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.ndim == 2 and set(np.unique(raw)) <= {0, 255}
    final = read_rgb(sintel / "training/final_left" / name)
    assert final.shape == render.left.shape and not np.array_equal(final, render.left)


def test_scene_split_and_paths(sintel):
    dm = _module(sintel)
    assert _setup_all(dm) == {"train": 36, "val": 10, "test": 10, "predict": 10}
    val_names = [s.name for s in dm.datasets["val"].samples]
    assert val_names == [f"{scene}/frame_{i:04d}" for scene in sorted(SINTEL_VAL_SCENES) for i in (1, 2)]
    train_scenes = {s.name.split("/")[0] for s in dm.datasets["train"].samples}
    assert train_scenes == set(SINTEL_SCENES) - set(SINTEL_VAL_SCENES) and len(train_scenes) == 18
    sample = dm.datasets["val"].samples[0]
    assert isinstance(sample, SintelSample)
    assert sample.left == sintel / "training/clean_left/ambush_6/frame_0001.png"
    assert sample.right == sintel / "training/clean_right/ambush_6/frame_0001.png"
    assert sample.disparity == sintel / "training/disparities/ambush_6/frame_0001.png"
    assert sample.occlusion == sintel / "training/occlusions/ambush_6/frame_0001.png"
    assert sample.outofframe == sintel / "training/outofframe/ambush_6/frame_0001.png"
    assert dm.disparity_format == "pfm"
    final = _module(sintel, render_pass="final")
    final.setup("validate")
    assert final.datasets["val"].samples[0].left == sintel / "training/final_left/ambush_6/frame_0001.png"
    assert [s.name for s in final.datasets["val"].samples] == val_names  # names do not depend on the pass


def test_all_split_and_val_scenes_override(sintel):
    dm = _module(sintel, split="all")
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (46, 46)
    dm = _module(sintel, val_scenes=["temple_2", "alley_1"])
    dm.setup("fit")
    assert [s.name for s in dm.datasets["val"].samples][::2] == ["alley_1/frame_0001", "temple_2/frame_0001"]
    assert len(dm.datasets["train"]) == 42
    with pytest.raises(ValueError, match=r"\['no_such_scene'\] are not among the 23 scenes"):
        _module(sintel, val_scenes=["alley_1", "no_such_scene"]).setup("fit")


def test_validity_excludes_out_of_frame_and_optionally_occluded(sintel):
    everything = _module(sintel, split="all", max_disp=None)
    noc = _module(sintel, split="all", max_disp=None, include_occluded=False)
    everything.setup("validate")
    noc.setup("validate")
    occluded_total = 0
    for index in range(0, 46, 5):
        sample = everything.datasets["val"].samples[index]
        gt = read_sintel_disparity(sample.disparity)
        occ, oof = read_sintel_mask(sample.occlusion), read_sintel_mask(sample.outofframe)
        item_all, item_noc = everything.datasets["val"][index], noc.datasets["val"][index]
        expected_all = (gt > 0) & ~oof
        np.testing.assert_array_equal(item_all["valid"][0].numpy(), expected_all)
        np.testing.assert_array_equal(item_noc["valid"][0].numpy(), expected_all & ~occ)
        np.testing.assert_array_equal(item_noc["disparity"][0].numpy(), np.where(expected_all & ~occ, gt, 0))
        occluded_total += int((expected_all & occ).sum())
    assert occluded_total > 0  # the option changes something
    capped = _module(sintel, split="all", max_disp=5)
    capped.setup("validate")
    item = capped.datasets["val"][3]
    gt = read_sintel_disparity(capped.datasets["val"].samples[3].disparity)
    assert item["valid"].any() and (gt[item["valid"][0].numpy()] < 5).all() and (gt >= 5).any()


def test_fadnet_list_file_with_mpi_sintel_prefix(sintel, tmp_path):
    # FADNet's Sintel_ALL.list roots at MPI-Sintel/ with the training/ folders directly below it.
    (tmp_path / "MPI-Sintel").symlink_to(sintel / "training", target_is_directory=True)
    lines = [
        f"MPI-Sintel/clean_left/{n} MPI-Sintel/clean_right/{n} MPI-Sintel/disparities/{n}"
        for n in ("bamboo_1/frame_0002.png", "alley_1/frame_0001.png")
    ]
    (tmp_path / "Sintel_ALL.list").write_text("\n".join(lines) + "\n")
    dm = _module(tmp_path, val_list="Sintel_ALL.list", include_occluded=False)
    dm.setup("validate")
    samples = dm.datasets["val"].samples
    assert [s.name for s in samples] == ["bamboo_1/frame_0002", "alley_1/frame_0001"]  # list order kept
    assert samples[0].occlusion == tmp_path / "MPI-Sintel/occlusions/bamboo_1/frame_0002.png"
    assert samples[0].outofframe == tmp_path / "MPI-Sintel/outofframe/bamboo_1/frame_0002.png"
    assert dm.datasets["val"][1]["valid"].shape == (1, HEIGHT, WIDTH)
    # The synthetic tree's own list reads the same way.
    own = _module(sintel, train_list=SINTEL_ALL_LIST, split="all")
    own.setup("fit")
    assert len(own.datasets["train"]) == 46
    (tmp_path / "bad.list").write_text("a.png b.png gt/alley_1/frame_0001.png\n")
    with pytest.raises(ValueError, match="no 'disparities' folder"):
        _module(tmp_path, val_list="bad.list").setup("validate")
    with pytest.raises(FileNotFoundError, match="absent.list"):
        _module(tmp_path, val_list="absent.list").setup("validate")


def test_train_batches_are_crops(sintel):
    dm = _module(sintel, augment=False, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["left"].shape == batch["right"].shape == (4, 3, 16, 32)
    assert batch["disparity"].shape == batch["valid"].shape == (4, 1, 16, 32)
    assert batch["valid"].dtype == torch.bool and batch["valid"].any()
    assert (batch["disparity"][~batch["valid"]] == 0).all()
    dataset = dm.datasets["train"]
    item, full = dataset[(0, 5)], dataset.load(5)
    windows = [
        (t, x)
        for t in range(HEIGHT - 16 + 1)
        for x in range(WIDTH - 32 + 1)
        if torch.equal(full["left"][:, t : t + 16, x : x + 32], item["left"])
    ]
    assert windows
    t, x = windows[0]
    assert torch.equal(item["valid"], full["valid"][:, t : t + 16, x : x + 32])


@pytest.mark.parametrize(
    ("victim", "include_occluded", "message"),
    [
        ("training/outofframe/cave_4/frame_0001.png", True, "1 Sintel mask files are missing"),
        ("training/occlusions/cave_4/frame_0001.png", False, "1 Sintel mask files are missing"),
        ("training/clean_right/cave_4/frame_0002.png", True, "1 of .* missing"),
    ],
)
def test_incomplete_tree_names_the_missing_file(sintel, tmp_path, victim, include_occluded, message):
    root = Path(shutil.copytree(sintel, tmp_path / "copy"))
    (root / victim).unlink()
    with pytest.raises(FileNotFoundError, match=message) as err:
        _module(root, include_occluded=include_occluded).setup("validate")
    assert str(root / victim) in str(err.value)


def test_occlusion_masks_are_only_needed_when_used(sintel, tmp_path):
    root = Path(shutil.copytree(sintel, tmp_path / "copy"))
    shutil.rmtree(root / "training/occlusions")
    dm = _module(root)  # include_occluded=True reads only outofframe/
    dm.setup("validate")
    assert dm.datasets["val"][0]["valid"].any()


def test_bad_mask_file_raises_format_error(tmp_path):
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), np.stack([np.zeros((4, 5)), np.full((4, 5), 255), np.zeros((4, 5))], -1).astype(np.uint8))
    with pytest.raises(FormatError, match="mask.png"):
        read_sintel_mask(path)
    path.write_bytes(b"not a png")
    with pytest.raises(FormatError, match="decoded"):
        read_sintel_mask(path)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_sintel_mask(tmp_path / "absent.png")


def test_missing_root_lists_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        _module(tmp_path / "absent").setup("fit")
    message = str(err.value)
    assert "does not exist" in message
    for folder in FOLDERS:
        assert folder in message


def test_invalid_arguments():
    with pytest.raises(ValueError, match="render_pass"):
        SintelStereoDataModule(render_pass="albedo")
    with pytest.raises(ValueError, match="split"):
        SintelStereoDataModule(split="frames")
    with pytest.raises(ValueError, match="val_scenes"):
        SintelStereoDataModule(val_scenes=["alley_1", "alley_1"])
    with pytest.raises(TypeError, match="include_occluded"):
        SintelStereoDataModule(include_occluded="yes")
    with pytest.raises(ValueError, match="frames_per_scene"):
        write_sintel_stereo("/nonexistent/never-written", frames_per_scene=0)
    with pytest.raises(ValueError, match="scenes"):
        write_sintel_stereo("/nonexistent/never-written", scenes=["a", "a"])


def test_defaults():
    dm = SintelStereoDataModule()
    assert dm.crop_size == (384, 768) and dm.max_disp == 192.0 and dm.include_occluded
    assert dm.hparams["render_pass"] == "clean" and dm.hparams["split"] == "scenes"
    options = dm.resolved_synthetic_options()
    assert options["scenes"] == list(SINTEL_SCENES) and options["height"] >= 384 and options["width"] >= 768


def test_root_none_generates_once_and_reuses(tmp_path, monkeypatch):
    options = {"frames_per_scene": 1, **TREE}
    target = tmp_path / "synthetic"
    dm = _module(None, synthetic_dir=str(target), synthetic_options=options)
    dm.prepare_data()
    assert (target / SYNTHETIC_MARKER).is_file() and (target / "training/final_right/temple_3/frame_0001.png").is_file()
    assert _setup_all(dm) == {"train": 18, "val": 5, "test": 5, "predict": 5}

    def fail(*args, **kwargs):
        raise AssertionError("the complete synthetic tree should have been reused")

    again = _module(None, synthetic_dir=str(target), synthetic_options=options)
    monkeypatch.setattr(again, "write_synthetic", fail)
    again.prepare_data()
    again.setup("validate")
    assert len(again.datasets["val"]) == 5 and math.isfinite(float(again.datasets["val"][0]["disparity"].sum()))


def test_trainer_fits_and_validates_fadnet_on_synthetic_sintel(tmp_path):
    options = {"frames_per_scene": 1, "height": 64, "width": 128, "anti_alias": 1}
    dm = _module(None, synthetic_dir=str(tmp_path / "tree"), synthetic_options=options, crop_size=(64, 128))
    model = StereoModule(net=create_model("fadnet_tiny"), log_images=False)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"])) and math.isfinite(float(metrics["val/epe"]))
    assert 0 <= float(metrics["val/d1_all"]) <= 100
