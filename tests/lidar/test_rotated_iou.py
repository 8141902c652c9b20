"""Rotated BEV / 3D IoU against shapely polygons: random pairs plus identical, disjoint, touching, nested, parallel
and degenerate boxes; the KITTI camera-frame helpers against corners built directly in the camera frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_hpml.metrics.rotated_iou import (
    camera_boxes_bev_iou,
    camera_boxes_iou_3d,
    camera_boxes_to_z_up,
    rotated_bev_intersection,
    rotated_bev_iou,
    rotated_iou_3d,
)

shapely = pytest.importorskip("shapely")
from shapely.geometry import Polygon


def lidar_polygon(box: np.ndarray) -> Polygon:
    """BEV rectangle of a LiDAR box x, y, z, l, w, h, yaw built independently of the module."""
    x, y, _, length, width, _, yaw = box
    c, s = math.cos(yaw), math.sin(yaw)
    local = [(u * length / 2, v * width / 2) for u, v in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(x + c * u - s * v, y + s * u + c * v) for u, v in local])


def shapely_ious(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bev, iou3d = np.zeros(len(a)), np.zeros(len(a))
    for i, (ba, bb) in enumerate(zip(a, b)):
        pa, pb = lidar_polygon(ba), lidar_polygon(bb)
        inter = pa.intersection(pb).area
        union = pa.area + pb.area - inter
        bev[i] = inter / union if union > 0 else 0.0
        dz = max(0.0, min(ba[2] + ba[5] / 2, bb[2] + bb[5] / 2) - max(ba[2] - ba[5] / 2, bb[2] - bb[5] / 2))
        vol = inter * dz
        vunion = pa.area * ba[5] + pb.area * bb[5] - vol
        iou3d[i] = vol / vunion if vunion > 0 else 0.0
    return bev, iou3d


def random_boxes(rng: np.random.Generator, n: int, spread: float = 3.0) -> np.ndarray:
    return np.c_[
        rng.uniform(-spread, spread, (n, 2)),
        rng.uniform(-1, 1, n),
        rng.uniform(0.3, 5.0, (n, 3)),
        rng.uniform(-2 * math.pi, 2 * math.pi, n),
    ]


def special_pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Identical, axis-aligned, parallel-shifted, touching, disjoint and nested pairs (40 of each kind)."""
    a_list, b_list = [], []
    base = random_boxes(rng, 240)
    for i, box in enumerate(base):
        kind = i % 6
        other = box.copy()
        if kind == 0:  # identical
            pass
        elif kind == 1:  # axis-aligned, both at multiples of pi/2
            box[6] = rng.integers(0, 4) * math.pi / 2
            other[6] = rng.integers(0, 4) * math.pi / 2
            other[:2] += rng.uniform(-1.5, 1.5, 2)
        elif kind == 2:  # same heading, shifted along and across: parallel edges overlapping
            shift = rng.uniform(-0.8, 0.8) * box[3], rng.uniform(-0.8, 0.8) * box[4]
            c, s = math.cos(box[6]), math.sin(box[6])
            other[0] += c * shift[0] - s * shift[1]
            other[1] += s * shift[0] + c * shift[1]
            other[6] += math.pi * rng.integers(0, 2)  # opposite heading, same rectangle orientation
        elif kind == 3:  # touching along the length edge (zero-area contact)
            c, s = math.cos(box[6]), math.sin(box[6])
            other[0] += c * box[3]
            other[1] += s * box[3]
        elif kind == 4:  # disjoint, far away
            other[:2] += 50.0
        else:  # nested: a smaller box of any heading inside the inscribed circle of ``box``
            r = min(box[3], box[4]) / 2
            other[3:5] = rng.uniform(0.1, 0.68, 2) * r
            other[6] = rng.uniform(-math.pi, math.pi)
            other[5] = box[5] / 2
        a_list.append(box)
        b_list.append(other)
    return np.array(a_list), np.array(b_list)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_pairs_agree_with_shapely(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 300), random_boxes(rng, 300)
    ref_bev, ref_3d = shapely_ious(a, b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(rotated_bev_iou(ta, tb, aligned=True).numpy(), ref_bev, atol=1e-6, rtol=0)
    np.testing.assert_allclose(rotated_iou_3d(ta, tb, aligned=True).numpy(), ref_3d, atol=1e-6, rtol=0)
    assert (ref_bev > 0.05).sum() > 50 and (ref_bev == 0).sum() > 20  # both overlapping and disjoint pairs tested


def test_special_pairs_agree_with_shapely() -> None:
    a, b = special_pairs(np.random.default_rng(3))
    ref_bev, ref_3d = shapely_ious(a, b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    bev = rotated_bev_iou(ta, tb, aligned=True).numpy()
    iou3d = rotated_iou_3d(ta, tb, aligned=True).numpy()
    assert np.isfinite(bev).all() and np.isfinite(iou3d).all()
    np.testing.assert_allclose(bev, ref_bev, atol=1e-6, rtol=0)
    np.testing.assert_allclose(iou3d, ref_3d, atol=1e-6, rtol=0)
    np.testing.assert_allclose(bev[0::6], 1.0, atol=1e-12)  # identical
    np.testing.assert_allclose(bev[3::6], 0.0, atol=1e-9)  # touching
    assert (bev[4::6] == 0).all()  # disjoint
    # nested: IoU = area ratio
    nested = slice(5, None, 6)
    np.testing.assert_allclose(bev[nested], (b[nested, 3] * b[nested, 4]) / (a[nested, 3] * a[nested, 4]), atol=1e-9)


def test_matrix_form_matches_pairwise_and_is_symmetric() -> None:
    rng = np.random.default_rng(7)
    a, b = torch.from_numpy(random_boxes(rng, 13)), torch.from_numpy(random_boxes(rng, 9))
    full = rotated_iou_3d(a, b)
    assert full.shape == (13, 9)
    rows = torch.arange(13).repeat_interleave(9)
    cols = torch.arange(9).repeat(13)
    torch.testing.assert_close(full.reshape(-1), rotated_iou_3d(a[rows], b[cols], aligned=True))
    torch.testing.assert_close(rotated_bev_iou(a, b), rotated_bev_iou(b, a).T)
    inter = rotated_bev_intersection(a, b)
    area = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None, :]
    torch.testing.assert_close(rotated_bev_iou(a, b), inter / (area - inter))


def test_known_values_and_dtype() -> None:
    a = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, 0.0]])
    b = torch.tensor([[1.0, 0.0, 1.0, 4.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0, 2.0, 2.0, math.pi / 2]])
    bev = rotated_bev_iou(a, b)
    assert bev.dtype == torch.float32
    torch.testing.assert_close(bev, torch.tensor([[6 / 10, 4 / 12]]))
    # 3D: shifted 1 m along x and 1 m up: 6 m^2 x 1 m / (16 + 16 - 6)
    torch.testing.assert_close(rotated_iou_3d(a, b)[0, 0], torch.tensor(6.0 / 26.0))


def test_degenerate_and_empty_inputs_do_not_give_nan() -> None:
    zero = torch.zeros(2, 7, dtype=torch.float64)
    assert torch.equal(rotated_bev_iou(zero, zero), torch.zeros(2, 2, dtype=torch.float64))
    assert torch.equal(rotated_iou_3d(zero, zero), torch.zeros(2, 2, dtype=torch.float64))
    flat = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 0.0, 0.3]], dtype=torch.float64)  # zero height
    assert rotated_iou_3d(flat, flat).item() == 0.0
    assert rotated_bev_iou(flat, flat).item() == pytest.approx(1.0)
    assert rotated_bev_iou(torch.zeros(0, 7), torch.zeros(5, 7)).shape == (0, 5)
    assert rotated_iou_3d(torch.zeros(3, 7), torch.zeros(0, 7)).shape == (3, 0)
    far = torch.tensor([[1000.0, -2000.0, 3.0, 4.2, 1.8, 1.6, 0.7]], dtype=torch.float64)
    assert rotated_iou_3d(far, far).item() == pytest.approx(1.0, abs=1e-9)


def test_bad_input_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"`boxes_b` must have shape \(N, 7\)"):
        rotated_bev_iou(torch.zeros(2, 7), torch.zeros(2, 5))
    with pytest.raises(TypeError, match="`boxes_a` must be a torch.Tensor"):
        rotated_iou_3d(np.zeros((2, 7)), torch.zeros(2, 7))
    with pytest.raises(ValueError, match="aligned=True"):
        rotated_bev_iou(torch.zeros(2, 7), torch.zeros(3, 7), aligned=True)
    with pytest.raises(ValueError, match="rotation_y"):
        camera_boxes_iou_3d(torch.zeros(2, 6), torch.zeros(2, 7))


def camera_polygon_and_y_range(box: np.ndarray) -> tuple[Polygon, tuple[float, float]]:
    """KITTI corners: local x = +-l/2, z = +-w/2, y in [-h, 0], rotated about +y by ry, translated to the location."""
    x, y, z, h, w, length, ry = box
    rot = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    local = np.array(
        [[length / 2, 0, w / 2], [length / 2, 0, -w / 2], [-length / 2, 0, -w / 2], [-length / 2, 0, w / 2]]
    )
    corners = local @ rot.T + np.array([x, y, z])
    return Polygon(corners[:, [0, 2]]), (y - h, y)


def test_camera_helpers_match_corners_built_in_the_camera_frame() -> None:
    rng = np.random.default_rng(11)
    n = 200
    a = np.c_[
        rng.uniform(-3, 3, n),
        rng.uniform(1, 2, n),
        rng.uniform(10, 16, n),
        rng.uniform(0.5, 3, (n, 3)),
        rng.uniform(-math.pi, math.pi, n),
    ]
    b = a + np.c_[rng.normal(0, 0.8, (n, 3)), rng.normal(0, 0.3, (n, 3)), rng.normal(0, 0.5, n)]
    b[:, 3:6] = np.abs(b[:, 3:6]) + 0.1
    ref_bev, ref_3d = np.zeros(n), np.zeros(n)
    for i in range(n):
        (pa, ya), (pb, yb) = camera_polygon_and_y_range(a[i]), camera_polygon_and_y_range(b[i])
        inter = pa.intersection(pb).area
        ref_bev[i] = inter / (pa.area + pb.area - inter)
        vol = inter * max(0.0, min(ya[1], yb[1]) - max(ya[0], yb[0]))
        ref_3d[i] = vol / (pa.area * a[i, 3] + pb.area * b[i, 3] - vol)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(camera_boxes_bev_iou(ta, tb, aligned=True).numpy(), ref_bev, atol=1e-6, rtol=0)
    np.testing.assert_allclose(camera_boxes_iou_3d(ta, tb, aligned=True).numpy(), ref_3d, atol=1e-6, rtol=0)
    assert (ref_3d > 0.1).sum() > 50
    # Mirrored heading (ry -> -ry) changes the overlap: the sign convention is really exercised.
    flipped = tb.clone()
    flipped[:, 6] = -flipped[:, 6]
    assert not torch.allclose(
        camera_boxes_bev_iou(ta, flipped, aligned=True), camera_boxes_bev_iou(ta, tb, aligned=True)
    )
    z_up = camera_boxes_to_z_up(ta[:1])
    torch.testing.assert_close(
        z_up[0, [0, 1, 2, 6]], torch.stack([ta[0, 0], ta[0, 2], -ta[0, 1] + ta[0, 3] / 2, -ta[0, 6]])
    )
