"""Tests for disparity / error colouring, the stereo panel and PNG output."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lightning_hpml.viz.disparity
from lightning_hpml.viz import (
    ERROR_BIN_COLORS,
    ERROR_BIN_EDGES,
    colorize_disparity,
    colorize_error,
    save_png,
    stereo_panel,
)

BLACK = [0, 0, 0]


def ramp(h: int = 6, w: int = 40, top: float = 100.0) -> np.ndarray:
    return np.tile(np.linspace(0.0, top, w, dtype=np.float32), (h, 1))


# --------------------------------------------------------------------------------------------------------------------
# colorize_disparity
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_tensor", [False, True])
def test_colorize_disparity_shape_dtype_and_invalid_black(as_tensor: bool) -> None:
    disp = ramp()
    disp[0, 3] = np.nan
    disp[1, 4] = np.inf
    valid = np.ones_like(disp, dtype=bool)
    valid[2, 5] = False
    image = colorize_disparity(
        torch.from_numpy(disp) if as_tensor else disp,
        max_disp=100.0,
        valid=torch.from_numpy(valid) if as_tensor else valid,
    )
    assert image.shape == (6, 40, 3) and image.dtype == np.uint8
    for r, c in [(0, 3), (1, 4), (2, 5)]:
        assert image[r, c].tolist() == BLACK
    # Valid pixels are never black (turbo's darkest colour is not black), including disparity 0.
    ok = np.ones(disp.shape, dtype=bool)
    ok[[0, 1, 2], [3, 4, 5]] = False
    assert (image[ok].sum(axis=1) > 0).all()


def test_bigger_disparity_gets_a_different_colour() -> None:
    image = colorize_disparity(np.array([[0.0, 20.0, 50.0, 100.0, 150.0]], dtype=np.float32), max_disp=100.0)
    colours = [tuple(c) for c in image[0]]
    assert len(set(colours[:4])) == 4  # 0, 20, 50, 100 all differ
    assert colours[4] == colours[3]  # above max_disp is clipped to the top colour
    # turbo runs from blue-ish (low) to red-ish (high)
    assert image[0, 0, 2] > image[0, 0, 0] and image[0, 3, 0] > image[0, 3, 2]


def test_auto_max_uses_valid_pixels_only_and_accepts_leading_ones() -> None:
    disp = np.array([[10.0, 20.0, 1000.0]], dtype=np.float32)
    valid = np.array([[True, True, False]])
    auto = colorize_disparity(disp[None, None], valid=valid)
    explicit = colorize_disparity(disp, max_disp=20.0, valid=valid)
    assert np.array_equal(auto, explicit)
    assert auto.shape == (1, 3, 3)


def test_same_max_disp_same_colours_and_cmap_choice() -> None:
    disp = ramp()
    assert np.array_equal(colorize_disparity(disp, 100.0), colorize_disparity(disp.copy(), 100.0))
    assert not np.array_equal(colorize_disparity(disp, 100.0, cmap="magma"), colorize_disparity(disp, 100.0))


def test_colorize_disparity_bad_inputs() -> None:
    with pytest.raises(ValueError, match="cmap"):
        colorize_disparity(ramp(), cmap="no-such-map")
    with pytest.raises(ValueError, match="max_disp"):
        colorize_disparity(ramp(), max_disp=0.0)
    with pytest.raises(ValueError, match=r"\(2, 6, 40\)"):
        colorize_disparity(np.stack([ramp(), ramp()]))
    with pytest.raises(TypeError, match="boolean"):
        colorize_disparity(ramp(), valid=np.ones((6, 40), dtype=np.uint8))
    with pytest.raises(ValueError, match="valid"):
        colorize_disparity(ramp(), valid=np.ones((6, 39), dtype=bool))
    with pytest.raises(TypeError, match="list"):
        colorize_disparity([[1.0, 2.0]])  # type: ignore[arg-type]


def test_all_invalid_map_is_black() -> None:
    image = colorize_disparity(np.full((3, 4), np.nan, dtype=np.float32))
    assert image.shape == (3, 4, 3) and not image.any()


# --------------------------------------------------------------------------------------------------------------------
# colorize_error
# --------------------------------------------------------------------------------------------------------------------
def test_error_bins_follow_kitti_edges() -> None:
    edges = np.array(ERROR_BIN_EDGES)
    assert edges[0] == 0 and math.isinf(edges[-1]) and np.allclose(edges[2:-1] / edges[1:-2], 2.0)
    # One sample inside each bin, plus exact edges (an edge belongs to the bin above it).
    inside = np.array([[0.1, 0.3, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 500.0]])
    image = colorize_error(inside)
    assert image.shape == (1, 10, 3) and image.dtype == np.uint8
    assert np.array_equal(image[0], ERROR_BIN_COLORS)
    at_edges = colorize_error(np.array([[0.0, 3.0, 2.999, 24.0]]))
    assert at_edges[0].tolist() == [ERROR_BIN_COLORS[k].tolist() for k in (0, 5, 4, 8)]
    assert len({tuple(c) for c in ERROR_BIN_COLORS}) == len(ERROR_BIN_COLORS)


def test_error_small_is_blue_large_is_red_invalid_black() -> None:
    err = torch.tensor([[0.05, -0.05, 30.0, 60.0, 1.0, math.nan]])  # signed errors: the magnitude counts
    valid = torch.tensor([[True, True, True, True, False, True]])
    image = colorize_error(err, valid)
    small, small_neg, red, dark_red, invalid, nan = (image[0, i] for i in range(6))
    assert small.tolist() == small_neg.tolist()
    assert small[2] > small[0]  # blue dominates
    assert red[0] > red[2] and dark_red[0] > dark_red[2]  # red dominates
    assert invalid.tolist() == BLACK and nan.tolist() == BLACK
    assert all(sum(c) > 0 for c in ERROR_BIN_COLORS.tolist())  # no bin is confused with "invalid"


def test_error_custom_bins_are_checked() -> None:
    with pytest.raises(ValueError, match="colors"):
        colorize_error(np.zeros((2, 2)), bin_edges=(0.0, 1.0, math.inf))
    with pytest.raises(ValueError, match="bin_edges"):
        colorize_error(np.zeros((2, 2)), bin_edges=(0.0, 2.0, 1.0), colors=ERROR_BIN_COLORS[:2])
    two = colorize_error(np.array([[0.5, 5.0]]), bin_edges=(0.0, 1.0, math.inf), colors=ERROR_BIN_COLORS[[0, -1]])
    assert two[0].tolist() == [ERROR_BIN_COLORS[0].tolist(), ERROR_BIN_COLORS[-1].tolist()]


# --------------------------------------------------------------------------------------------------------------------
# stereo_panel and save_png
# --------------------------------------------------------------------------------------------------------------------
def test_panel_rows_with_and_without_ground_truth() -> None:
    h, w = 24, 80
    left = torch.rand(3, h, w)
    gt = torch.from_numpy(ramp(h, w, 60.0))
    pred = gt + 2.0
    valid = gt > 5.0
    full = stereo_panel(left, pred, gt, valid, max_disp=64.0)
    assert full.shape == (4 * h, w, 3) and full.dtype == np.uint8
    short = stereo_panel(left, pred, max_disp=64.0)
    assert short.shape == (2 * h, w, 3)
    # Rows are in order: left, prediction, ground truth, error (check below the label boxes, right half).
    unlabeled = stereo_panel(left, pred, gt, valid, max_disp=64.0, labels=False)
    expected_left = np.round(left.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(unlabeled[:h], expected_left)
    assert np.array_equal(unlabeled[h : 2 * h], colorize_disparity(pred, 64.0))
    assert np.array_equal(unlabeled[2 * h : 3 * h], colorize_disparity(gt, 64.0, valid=valid))
    assert np.array_equal(unlabeled[3 * h :], colorize_error(pred - gt, valid))
    # Invalid ground truth is black in the gt and error rows, but not in the prediction row.
    assert unlabeled[2 * h, 0].tolist() == BLACK and unlabeled[3 * h, 0].tolist() == BLACK
    assert unlabeled[h, 0].tolist() != BLACK
    # Labels change only a corner of each row.
    assert not np.array_equal(full, unlabeled)
    assert np.array_equal(full[h - 4 : h, w // 2 :], unlabeled[h - 4 : h, w // 2 :])


def test_panel_accepts_numpy_hwc_uint8_and_batch_shaped_maps() -> None:
    h, w = 10, 16
    left = np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    disp = torch.rand(1, 1, h, w) * 30
    panel = stereo_panel(left, disp, disp, labels=False)
    assert panel.shape == (4 * h, w, 3)
    assert np.array_equal(panel[:h], left)
    # Perfect prediction: every error pixel is in the smallest bin.
    assert (panel[3 * h :] == ERROR_BIN_COLORS[0]).all()


def test_panel_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"`pred` has size \(8, 8\) but `left` has size \(10, 16\)"):
        stereo_panel(torch.rand(3, 10, 16), torch.rand(8, 8))
    with pytest.raises(ValueError, match=r"`gt` has size"):
        stereo_panel(torch.rand(3, 10, 16), torch.rand(10, 16), torch.rand(10, 15))
    with pytest.raises(ValueError, match=r"\[0, 1\].*normalisation"):
        stereo_panel(torch.randn(3, 10, 16) * 3, torch.rand(10, 16))
    with pytest.raises(ValueError, match="RGB image"):
        stereo_panel(np.zeros((10, 16, 4), dtype=np.uint8), torch.rand(10, 16))


def test_save_png_roundtrip_and_no_silent_overwrite(tmp_path: Path) -> None:
    panel = stereo_panel(torch.rand(3, 12, 20), torch.rand(12, 20) * 10, torch.rand(12, 20) * 10)
    path = save_png(tmp_path / "sub" / "panel.png", panel)
    assert path.exists()
    with Image.open(path) as im:
        assert im.mode == "RGB"
        assert np.array_equal(np.asarray(im), panel)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_png(path, panel)
    save_png(path, np.zeros_like(panel), overwrite=True)
    with Image.open(path) as im:
        assert not np.asarray(im).any()


def test_save_png_refuses_wrong_images(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="uint8"):
        save_png(tmp_path / "a.png", np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4, 4\)"):
        save_png(tmp_path / "b.png", np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=".png"):
        save_png(tmp_path / "c.jpg", np.zeros((4, 4, 3), dtype=np.uint8))
    assert not any(tmp_path.iterdir())


def test_docstring_examples() -> None:
    result = doctest.testmod(lightning_hpml.viz.disparity, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
