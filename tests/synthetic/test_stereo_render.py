"""Rendered stereo pairs: exact disparity, photo-consistency, occlusions, determinism and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_hpml.datamodules.synthetic import (
    Patch,
    StereoRig,
    StereoScene,
    random_scene,
    render_scene,
    render_stereo_pair,
)
from lightning_hpml.datamodules.synthetic.procedural_texture import make_texture


def _plane_scene(rig: StereoRig, origin, edge_u, edge_v) -> StereoScene:
    texture = make_texture(np.random.default_rng(0), 64, 64)
    patch = Patch(np.asarray(origin, float), np.asarray(edge_u, float), np.asarray(edge_v, float), texture=0)
    return StereoScene(patches=[patch], textures=[texture])


def _warp_right_to_left(right: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """Left image predicted from the right one: left(x, y) = right(x - d, y), linear interpolation along x."""
    h, w = disparity.shape
    x = np.arange(w)[None, :] - disparity.astype(np.float64)
    x0 = np.floor(x).astype(np.int64)
    a = (x - x0)[..., None]
    rows = np.arange(h)[:, None]
    r = right.astype(np.float64)
    return r[rows, np.clip(x0, 0, w - 1)] * (1 - a) + r[rows, np.clip(x0 + 1, 0, w - 1)] * a


@pytest.mark.parametrize("anti_alias", [1, 2])
@pytest.mark.parametrize("depth", [4.0, 25.0])
def test_fronto_parallel_plane_has_disparity_f_b_over_z_everywhere(anti_alias: int, depth: float) -> None:
    rig = StereoRig(height=40, width=64, focal=70.0, baseline=0.8)
    scene = _plane_scene(rig, (-3 * depth, -3 * depth, depth), (6 * depth, 0, 0), (0, 6 * depth, 0))
    render = render_scene(scene, rig, anti_alias=anti_alias)
    expected = np.float32(70.0 * 0.8 / depth)
    np.testing.assert_allclose(render.disparity_left, expected, rtol=1e-6)
    np.testing.assert_allclose(render.disparity_right, expected, rtol=1e-6)
    # Only the left band whose points leave the right image is "occluded"; nothing hides anything.
    columns = np.arange(rig.width)[None, :].repeat(rig.height, 0)
    np.testing.assert_array_equal(render.occlusion_left, columns - expected < -0.5)
    np.testing.assert_array_equal(render.out_of_frame_left, render.occlusion_left)
    assert not render.object_mask_left.any()


def test_slanted_plane_disparity_is_affine_and_views_agree() -> None:
    rig = StereoRig(height=48, width=80, focal=80.0, baseline=1.0)
    # A plane receding to the right and downwards (disparity about 4 px at the top left, 2.6 px at the bottom right).
    scene = _plane_scene(rig, (-40.0, -40.0, 4.0), (80.0, 0.0, 30.0), (0.0, 80.0, 10.0))
    render = render_scene(scene, rig, anti_alias=1)
    h, w = render.disparity_left.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    design = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, render.disparity_left.ravel().astype(np.float64), rcond=None)
    assert np.abs(design @ coef - render.disparity_left.ravel()).max() < 1e-3
    assert render.disparity_left.max() - render.disparity_left.min() > 1.0  # really slanted
    # The right pixel x sees the point that the left view shows at x + d_R: d_L(x + d_R) == d_R.
    d_right = render.disparity_right.astype(np.float64)
    predicted = coef[0] * (u + d_right) + coef[1] * v + coef[2]
    assert np.abs(predicted - d_right).max() < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_right_image_warped_by_left_disparity_reproduces_left_image(seed: int) -> None:
    render = render_stereo_pair(64, 192, max_disparity=30.0, seed=seed)
    d = render.disparity_left
    columns = np.arange(d.shape[1])[None, :]
    usable = ~render.occlusion_left & (columns - d - 3 >= 0)
    assert usable.mean() > 0.5

    def error(disparity: np.ndarray) -> float:
        diff = np.abs(_warp_right_to_left(render.right, disparity) - render.left.astype(np.float64))
        return float(diff.mean(axis=-1)[usable].mean())

    exact, shifted = error(d), error(d + 3.0)
    assert exact < 5.0, f"mean abs error with the true disparity is {exact:.2f} grey levels"
    assert shifted > 4.0 * exact, f"a 3 px error only raised the error from {exact:.2f} to {shifted:.2f}"


def test_occlusion_mask_agrees_with_right_view_disparity() -> None:
    render = render_stereo_pair(64, 192, max_disparity=30.0, seed=5)
    assert render.object_mask_left.any()
    hidden = render.occlusion_left & ~render.out_of_frame_left
    assert hidden.sum() > 20, "objects in front of a background must hide some background from the right camera"
    h, w = render.disparity_left.shape
    rows, cols = np.mgrid[0:h, 0:w]
    target = np.clip(np.rint(cols - render.disparity_left).astype(int), 0, w - 1)
    seen_from_right = render.disparity_right[rows, target]
    gap = seen_from_right - render.disparity_left
    visible = ~render.occlusion_left
    # Visible: the right view shows the same surface there (up to the half-pixel rounding on slanted surfaces).
    assert (np.abs(gap[visible]) < 1.0).mean() > 0.95
    # Hidden: the right view shows something nearer (larger disparity) there.
    assert (gap[hidden] > 0.1).mean() > 0.9


def test_render_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    a = render_stereo_pair(32, 96, max_disparity=16.0, seed=11)
    b = render_stereo_pair(32, 96, max_disparity=16.0, seed=np.random.default_rng(11))
    c = render_stereo_pair(32, 96, max_disparity=16.0, seed=12)
    for name in ("left", "right", "disparity_left", "disparity_right", "occlusion_left", "object_index_left"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert not np.array_equal(a.left, c.left)
    assert not np.array_equal(a.disparity_left, c.disparity_left)


def test_output_types_ranges_and_texture_contrast() -> None:
    render = render_stereo_pair(48, 128, max_disparity=20.0, min_disparity=2.0, seed=3)
    assert render.left.shape == render.right.shape == (48, 128, 3)
    assert render.left.dtype == render.right.dtype == np.uint8
    for name in ("disparity_left", "disparity_right"):
        d = getattr(render, name)
        assert d.dtype == np.float32 and d.shape == (48, 128)
        assert d.min() >= 2.0 - 1e-4 and d.max() <= 20.0 + 1e-4, (name, d.min(), d.max())
    assert render.disparity_left.max() - render.disparity_left.min() > 6.0  # a useful spread, not one depth
    for name in ("occlusion_left", "object_mask_left", "out_of_frame_left"):
        assert getattr(render, name).dtype == bool
    np.testing.assert_array_equal(render.object_mask_left, render.object_index_left > 0)
    assert render.object_index_left.max() >= 1
    # Rich texture: strong local contrast between horizontal neighbours (flat colours would give ~0).
    gradient = np.abs(np.diff(render.left.astype(np.float64), axis=1)).mean()
    assert gradient > 8.0, gradient


def test_object_count_is_respected() -> None:
    rig = StereoRig(height=32, width=96, focal=96.0)
    rng = np.random.default_rng(0)
    assert random_scene(rig, rng, min_disparity=1.0, max_disparity=20.0, num_objects=0).num_objects == 0
    assert random_scene(rig, rng, min_disparity=1.0, max_disparity=20.0, num_objects=5).num_objects == 5
    counts = {
        random_scene(rig, np.random.default_rng(s), min_disparity=1.0, max_disparity=20.0).num_objects
        for s in range(12)
    }
    assert counts <= set(range(3, 9)) and len(counts) > 1


def test_photometric_jitter_changes_colours_not_geometry() -> None:
    rig = StereoRig(height=32, width=96, focal=96.0)
    scene = random_scene(rig, np.random.default_rng(4), min_disparity=1.0, max_disparity=16.0)
    plain = render_scene(scene, rig)
    jittered = render_scene(scene, rig, photometric_jitter=0.05, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(plain.disparity_left, jittered.disparity_left)
    assert np.abs(plain.right.astype(int) - jittered.right.astype(int)).mean() > 1.0


def test_bad_arguments_raise_clear_errors() -> None:
    rig = StereoRig(height=16, width=32, focal=32.0)
    scene = _plane_scene(rig, (-20.0, -20.0, 5.0), (40.0, 0.0, 0.0), (0.0, 40.0, 0.0))
    with pytest.raises(ValueError, match="anti_alias"):
        render_scene(scene, rig, anti_alias=0)
    with pytest.raises(ValueError, match="rng"):
        render_scene(scene, rig, photometric_jitter=0.1)
    with pytest.raises(ValueError, match="min_disparity"):
        random_scene(rig, np.random.default_rng(0), min_disparity=5.0, max_disparity=5.0)
    with pytest.raises(ValueError, match="max_disparity"):
        render_stereo_pair(16, 32, max_disparity=-1.0, seed=0)
    with pytest.raises(ValueError, match="width"):
        StereoRig(height=16, width=0, focal=32.0)
    behind = _plane_scene(rig, (-20.0, -20.0, -1.0), (40.0, 0.0, 0.0), (0.0, 40.0, 5.0))
    with pytest.raises(ValueError, match="behind the camera"):
        render_scene(behind, rig)
    small = _plane_scene(rig, (-0.1, -0.1, 5.0), (0.2, 0.0, 0.0), (0.0, 0.2, 0.0))  # leaves most rays empty
    with pytest.raises(RuntimeError, match="hit no surface"):
        render_scene(small, rig)
