"""Synthetic Scene Flow tree: layout and counts, read-back through the format readers, lists, overwrite rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_hpml.datamodules.formats import read_pfm, read_rgb
from lightning_hpml.datamodules.synthetic import render_stereo_pair, write_sceneflow
from lightning_hpml.datamodules.synthetic.output_tree import README_NAME, item_rng

SIZE = {"height": 32, "width": 64, "max_disparity": 10.0}


def _relative_files(root: Path, pattern: str) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file()}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sceneflow") / "data"
    write_sceneflow(
        root,
        subsets=("FlyingThings3D", "Monkaa", "Driving"),
        num_sequences=1,
        num_test_sequences=1,
        frames_per_sequence=2,
        seed=3,
        **SIZE,
    )
    return root


def test_layout_and_counts_follow_the_real_distribution(tree: Path) -> None:
    ft3d = _relative_files(tree, "FlyingThings3D/frames_cleanpass/**/left/*.png")
    expected = {
        f"FlyingThings3D/frames_cleanpass/{part}/{letter}/0000/left/{frame}.png"
        for part, letters in (("TRAIN", "ABC"), ("TEST", "A"))
        for letter in letters
        for frame in ("0006", "0007")
    }
    assert ft3d == expected
    assert _relative_files(tree, "Monkaa/frames_cleanpass/*/left/*.png") == {
        "Monkaa/frames_cleanpass/a_rain_of_stones_x2/left/0000.png",
        "Monkaa/frames_cleanpass/a_rain_of_stones_x2/left/0001.png",
    }
    driving = _relative_files(tree, "Driving/frames_finalpass/*/*/*/left/*.png")
    assert len(driving) == 2 * 2 * 2 * 2
    assert "Driving/frames_finalpass/35mm_focallength/scene_backwards/slow/left/0002.png" in driving
    # Every image has its twin in the other view and pass, and a disparity for each view.
    for subset in ("FlyingThings3D", "Monkaa", "Driving"):
        for left in (tree / subset / "frames_cleanpass").glob("**/left/*.png"):
            rel = left.relative_to(tree / subset / "frames_cleanpass")
            sequence = rel.parent.parent
            assert (tree / subset / "frames_cleanpass" / sequence / "right" / rel.name).is_file()
            assert (tree / subset / "frames_finalpass" / rel).is_file()
            for view in ("left", "right"):
                assert (tree / subset / "disparity" / sequence / view / rel.with_suffix(".pfm").name).is_file()
    assert len(list(tree.glob("**/*.png"))) == 2 * 2 * (len(ft3d) + 2 + len(driving))
    assert len(list(tree.glob("**/*.pfm"))) == 2 * (len(ft3d) + 2 + len(driving))


def test_files_read_back_as_the_render(tree: Path) -> None:
    render = render_stereo_pair(seed=item_rng(3, "FlyingThings3D/TRAIN/B/0000/0007"), **SIZE)
    base = tree / "FlyingThings3D"
    np.testing.assert_array_equal(read_pfm(base / "disparity/TRAIN/B/0000/left/0007.pfm"), render.disparity_left)
    np.testing.assert_array_equal(read_pfm(base / "disparity/TRAIN/B/0000/right/0007.pfm"), render.disparity_right)
    np.testing.assert_array_equal(read_rgb(base / "frames_cleanpass/TRAIN/B/0000/left/0007.png"), render.left)
    np.testing.assert_array_equal(read_rgb(base / "frames_cleanpass/TRAIN/B/0000/right/0007.png"), render.right)
    assert (render.disparity_right > 0).all()


def test_final_pass_has_the_same_geometry_but_another_look(tree: Path) -> None:
    clean = read_rgb(tree / "Monkaa/frames_cleanpass/a_rain_of_stones_x2/left/0001.png").astype(np.float64)
    final = read_rgb(tree / "Monkaa/frames_finalpass/a_rain_of_stones_x2/left/0001.png").astype(np.float64)
    assert clean.shape == final.shape == (32, 64, 3)
    difference = np.abs(clean - final).mean()
    assert 1.0 < difference < 40.0
    # Blur lowers the local contrast.
    assert np.abs(np.diff(final, axis=1)).mean() < np.abs(np.diff(clean, axis=1)).mean()


def test_list_files_are_fadnet_style_and_complete(tree: Path) -> None:
    train = (tree / "lists/sceneflow_train.list").read_text().splitlines()
    test = (tree / "lists/FlyingThings3D_release_TEST.list").read_text().splitlines()
    assert len(train) == 3 * 2 + 2 + 8 * 2 and len(test) == 2
    for line in train + test:
        left, right, disparity = line.split(" ")
        assert "frames_cleanpass" in left and "/left/" in left and "/right/" in right and disparity.endswith(".pfm")
        for rel in (left, right, disparity):
            assert (tree / rel).is_file(), rel
    assert all("/TEST/" in line for line in test) and not any("/TEST/" in line for line in train)
    assert sum(line.startswith("Driving/") for line in train) == 16


def test_readme_names_generator_seed_and_parameters(tree: Path) -> None:
    text = (tree / README_NAME).read_text()
    assert text.startswith("SYNTHETIC DATA")
    assert "write_sceneflow" in text and '"seed": 3' in text and '"frames_per_sequence": 2' in text


def test_same_seed_gives_identical_files_and_finalpass_only_works(tmp_path: Path) -> None:
    a = write_sceneflow(tmp_path / "a", num_sequences=1, frames_per_sequence=1, seed=7, **SIZE)
    b = write_sceneflow(tmp_path / "b", num_sequences=1, frames_per_sequence=1, seed=7, passes=("finalpass",), **SIZE)
    rel = "FlyingThings3D/frames_finalpass/TEST/A/0000/left/0006.png"
    assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert not (b / "FlyingThings3D/frames_cleanpass").exists()
    assert "frames_finalpass" in (b / "lists/sceneflow_train.list").read_text()
    pfm = "FlyingThings3D/disparity/TRAIN/C/0000/left/0006.pfm"
    assert (a / pfm).read_bytes() == (b / pfm).read_bytes()


def test_refuses_non_empty_root_unless_overwrite(tmp_path: Path) -> None:
    root = write_sceneflow(tmp_path / "sf", num_sequences=1, frames_per_sequence=2, seed=0, **SIZE)
    with pytest.raises(FileExistsError, match=str(root)):
        write_sceneflow(root, num_sequences=1, frames_per_sequence=1, **SIZE)
    # overwrite=True replaces the synthetic tree entirely: no stale frame 0007 survives.
    write_sceneflow(root, num_sequences=1, frames_per_sequence=1, overwrite=True, **SIZE)
    assert not list(root.glob("**/0007.png"))
    assert len((root / "lists/sceneflow_train.list").read_text().splitlines()) == 3
    # A folder we did not generate is never emptied, even with overwrite=True.
    foreign = tmp_path / "real"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="real"):
        write_sceneflow(foreign, overwrite=True, **SIZE)
    assert (foreign / "keep.txt").read_text() == "precious"
    # An empty existing folder is fine.
    (tmp_path / "empty").mkdir()
    write_sceneflow(tmp_path / "empty", num_sequences=1, frames_per_sequence=1, **SIZE)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subsets": ("FlyingThings2D",)}, "subsets"),
        ({"passes": ("clean",)}, "passes"),
        ({"frames_per_sequence": 11}, "frames_per_sequence"),
        ({"num_sequences": 0}, "num_sequences"),
        ({"max_disparity": 64.0}, "max_disparity"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_before_writing(tmp_path: Path, kwargs: dict, match: str) -> None:
    options = {**SIZE, **kwargs}
    with pytest.raises(ValueError, match=match):
        write_sceneflow(tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()
