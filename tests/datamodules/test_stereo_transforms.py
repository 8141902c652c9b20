"""FADNet training augmentation: aligned random crops and independent per-view colour noise."""

from __future__ import annotations

import pytest
import torch

from lightning_hpml.datamodules.stereo.transforms import (
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    ColorAugment,
    RandomCrop,
    StereoTrainTransform,
)


def _sample(height: int = 40, width: int = 60) -> dict:
    """A sample whose pixels encode their own coordinates, so a crop's window can be read back."""
    rows = torch.arange(height, dtype=torch.float32).view(height, 1).expand(height, width)
    cols = torch.arange(width, dtype=torch.float32).view(1, width).expand(height, width)
    image = torch.stack([rows / height, cols / width, torch.full_like(rows, 0.5)])
    return {
        "left": image.clone(),
        "right": image.clone(),
        "disparity": (rows * 1000 + cols)[None].clone(),
        "valid": (cols[None] % 2 == 0).clone(),
        "name": "sample/0001",
        "index": 3,
    }


def test_crop_uses_one_window_for_views_and_ground_truth():
    torch.manual_seed(0)
    crop = RandomCrop((16, 24))
    tops, lefts = set(), set()
    for _ in range(20):
        out = crop(_sample())
        assert out["left"].shape == out["right"].shape == (3, 16, 24)
        assert out["disparity"].shape == out["valid"].shape == (1, 16, 24)
        top, left = int(out["disparity"][0, 0, 0]) // 1000, int(out["disparity"][0, 0, 0]) % 1000
        tops.add(top)
        lefts.add(left)
        expected = _sample()
        for key in ("left", "right", "disparity", "valid"):
            torch.testing.assert_close(out[key], expected[key][..., top : top + 16, left : left + 24])
        assert out["name"] == "sample/0001" and out["index"] == 3
    assert len(tops) > 3 and len(lefts) > 3  # the window really moves


def test_crop_min_top_fraction_keeps_top_rows_out():
    torch.manual_seed(1)
    crop = RandomCrop((10, 20), min_top_fraction=0.25)
    tops = {int(crop(_sample(40, 60))["disparity"][0, 0, 0]) // 1000 for _ in range(50)}
    assert min(tops) >= 10 and max(tops) <= 30 and len(tops) > 5
    # Too short for the margin and the crop: bottom-aligned window.
    tall = RandomCrop((36, 20), min_top_fraction=0.25)
    assert {int(tall(_sample(40, 60))["disparity"][0, 0, 0]) // 1000 for _ in range(10)} == {4}


def test_crop_larger_than_image_names_sizes_and_sample():
    with pytest.raises(ValueError, match=r"crop_size=\(64, 24\).*\(40, 60\)") as err:
        RandomCrop((64, 24))(_sample())
    assert "sample/0001" in str(err.value)


@pytest.mark.parametrize("bad", [(0, 10), (10,), (10.5, 20), (-1, 4)])
def test_crop_rejects_bad_size(bad):
    with pytest.raises(ValueError, match="crop_size"):
        RandomCrop(bad)


def test_colour_noise_is_drawn_independently_per_view():
    torch.manual_seed(0)
    sample = _sample()
    transform = StereoTrainTransform((40, 60))  # full-size crop: only the colour changes
    out = transform(sample)
    assert not torch.allclose(out["left"], sample["left"], atol=1e-3)
    assert not torch.allclose(out["right"], sample["right"], atol=1e-3)
    # Identical input views, different output: the two views got separate random draws.
    assert (out["left"] - out["right"]).abs().mean() > 1e-3
    # Ground truth is untouched by colour noise.
    torch.testing.assert_close(out["disparity"], sample["disparity"])
    assert out["left"].min() >= 0 and out["left"].max() <= 1 and out["left"].dtype == torch.float32


def test_colour_off_only_crops():
    out = StereoTrainTransform((40, 60), color=False)(_sample())
    torch.testing.assert_close(out["left"], _sample()["left"])
    torch.testing.assert_close(out["right"], _sample()["right"])


def test_colour_noise_follows_torch_seed():
    augment = ColorAugment()
    image = _sample()["left"]
    torch.manual_seed(5)
    a = augment(image)
    torch.manual_seed(5)
    b = augment(image)
    c = augment(image)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_lighting_adds_one_rgb_offset_along_imagenet_pca():
    augment = ColorAugment(strength=0.0, lighting_std=0.1)
    image = torch.full((3, 8, 8), 0.5)
    torch.manual_seed(2)
    out = augment(image)
    torch.manual_seed(2)
    augment.jitter(image)  # consume the jitter's draws (identity at strength 0)
    alpha = torch.randn(3) * 0.1
    expected = torch.tensor(IMAGENET_PCA_EIGVEC) @ (alpha * torch.tensor(IMAGENET_PCA_EIGVAL))
    torch.testing.assert_close(out[:, 0, 0], 0.5 + expected)
    torch.testing.assert_close(out, out[:, :1, :1].expand(3, 8, 8))  # same offset at every pixel
    # The eigenvectors are orthonormal (columns), as a PCA basis must be.
    vec = torch.tensor(IMAGENET_PCA_EIGVEC)
    torch.testing.assert_close(vec.T @ vec, torch.eye(3), atol=2e-3, rtol=0)
