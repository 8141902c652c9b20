"""Depth-map fusion on the synthetic DTU scan: exact depths give points on the surface, corrupted ones are dropped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.mvs import DTUDataModule
from lightning_hpml.metrics.point_cloud import dtu_accuracy_completeness
from lightning_hpml.modules.mvs import fuse_depth_maps


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        data = DTUDataModule(num_views=5)
        data.prepare_data()
        data.setup("test")
    items = [data.datasets["test"][i] for i in range(len(data.datasets["test"]))]
    order = [int(item["view_ids"][0]) for item in items]
    views = sorted(range(len(items)), key=lambda i: order[i])
    depths = torch.stack([items[i]["depth"][0] for i in views])
    images = torch.stack([items[i]["images"][0] for i in views])
    intrinsics = torch.stack([items[i]["intrinsics"][0] for i in views])
    extrinsics = torch.stack([items[i]["extrinsics"][0] for i in views])
    pairs = {v: [int(s) for s in items[views[v]]["view_ids"][1:]] for v in range(len(views))}
    return depths, images, intrinsics, extrinsics, pairs


def test_fusing_exact_depths_puts_points_on_the_surface(scan):
    depths, images, intrinsics, extrinsics, pairs = scan
    cloud = fuse_depth_maps(depths, images, intrinsics, extrinsics, pairs, min_views=2)
    reference = fuse_depth_maps(depths, images, intrinsics, extrinsics, pairs, min_views=0)  # every pixel, unfused
    assert len(cloud.points) > 0.4 * depths.numel()
    result = dtu_accuracy_completeness(cloud, reference, spacing=None, max_dist=1.0)
    assert result["accuracy"] < 5e-3  # scene units (the tabletop is ~5 units away)


def test_inconsistent_depths_are_filtered_out(scan):
    depths, images, intrinsics, extrinsics, pairs = scan
    noisy = depths.clone()
    noisy[0, :, : depths.shape[-1] // 2] *= 1.3  # the left half of view 0 is 30 % too far
    clean = fuse_depth_maps(depths, images, intrinsics, extrinsics, {0: pairs[0]}, min_views=2)
    broken = fuse_depth_maps(noisy, images, intrinsics, extrinsics, {0: pairs[0]}, min_views=2)
    assert len(broken.points) < 0.7 * len(clean.points)
    with pytest.raises(ValueError, match="same number of views"):
        fuse_depth_maps(depths[:2], images, intrinsics, extrinsics, pairs)
    assert np.isfinite(np.asarray(broken.points)).all()
