"""IA-SSD / RIDE detector: shapes, head split, rotation invariance, losses wired (overfitting), post-processing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lightning_hpml.modules import create_model
from lightning_hpml.modules.lidar.box_coder import PointBinResidualCoder
from lightning_hpml.modules.lidar.box_ops import bev_nms, boxes_to_corners_3d, points_in_boxes, rotate_points_along_z
from lightning_hpml.modules.lidar.ia_ssd import IASSD, ia_ssd, ia_ssd_tiny, ride_ia_ssd, ride_ia_ssd_tiny
from lightning_hpml.modules.lidar.ia_ssd_head import IASSDLoss


def random_scene(n=1024, batch=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([20.0, 20.0, 3.0], dtype=dtype)
    shift = torch.tensor([0.0, 10.0, 2.0], dtype=dtype)
    return [
        torch.cat(
            [torch.rand(n, 3, generator=g, dtype=dtype) * scale - shift, torch.rand(n, 1, generator=g, dtype=dtype)], 1
        )
        for _ in range(batch)
    ]


def surface_points(box, n, g):
    """Points uniformly on the four sides and the top of ``box`` (what a LiDAR sees of an object)."""
    l, w, h = box[3:6].tolist()
    local = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([l, w, h])
    face = torch.randint(0, 5, (n,), generator=g)
    local[face == 0, 0], local[face == 1, 0] = l / 2, -l / 2
    local[face == 2, 1], local[face == 3, 1] = w / 2, -w / 2
    local[face == 4, 2] = h / 2
    return rotate_points_along_z(local[None], box[6:7])[0] + box[:3]


def object_scene(n=1024, seed=0):
    """A car and a pedestrian on a flat ground patch, 1024 points with reflectance."""
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[8.0, -3.0, -0.9, 3.9, 1.6, 1.56, 0.4], [14.0, 4.0, -0.85, 0.8, 0.6, 1.73, -1.2]])
    labels = torch.tensor([1, 2])
    obj = torch.cat([surface_points(boxes[0], 300, g), surface_points(boxes[1], 150, g)])
    ground = torch.rand(n - len(obj), 3, generator=g) * torch.tensor([20.0, 20.0, 0.05]) + torch.tensor(
        [2.0, -10.0, -1.7]
    )
    xyz = torch.cat([obj, ground])[torch.randperm(n, generator=g)]
    return torch.cat([xyz, torch.rand(n, 1, generator=g)], 1), boxes, labels


@pytest.mark.parametrize("rotation_invariant", [False, True])
def test_forward_backward_shapes_and_head_split(rotation_invariant):
    torch.manual_seed(0)
    model = ride_ia_ssd_tiny() if rotation_invariant else ia_ssd_tiny()
    out = model(random_scene())
    b, n, k = 2, 64, 3
    assert out["centers"].shape == out["centers_origin"].shape == out["center_offsets"].shape == (b, n, 3)
    assert out["cls_logits"].shape == (b, n, k)
    assert out["box_encodings"].shape == (b, n, 6 + 2 * 12) and out["boxes"].shape == (b, n, 7)
    assert [x.shape[1] for x in out["sa_xyz"]] == [512, 256, 128, 64]
    assert [None if x is None else x.shape[1] for x in out["sa_cls_logits"]] == [None, 256, 128, None]
    assert (out["center_ri_features"] is not None) == rotation_invariant
    # vote offsets are clipped to (3, 3, 2) m
    assert ((out["centers"] - out["centers_origin"]).abs() <= torch.tensor([3.0, 3.0, 2.0]) + 1e-6).all()

    # which head part reads which branch (RIDE: cls <- RI, centre/size <- [RI, OA], heading <- OA)
    oa, ri = out["center_features"], out["center_ri_features"]
    feats = (oa, ri) if rotation_invariant else (oa,)

    def depends(target):
        grads = torch.autograd.grad(target.sum(), feats, retain_graph=True, allow_unused=True)
        return tuple(gr is not None and gr.abs().sum() > 0 for gr in grads)

    if rotation_invariant:
        assert depends(out["cls_logits"]) == (False, True)
        assert depends(out["box_encodings"][..., :6]) == (True, True)
        assert depends(out["box_encodings"][..., 6:]) == (True, False)
    else:
        assert depends(out["cls_logits"]) == (True,) and depends(out["box_encodings"]) == (True,)

    boxes = [torch.tensor([[5.0, 0.0, -0.5, 3.9, 1.6, 1.56, 0.3]]), torch.zeros(0, 7)]
    labels = [torch.tensor([1]), torch.zeros(0, dtype=torch.long)]
    total, parts = model.loss(out, boxes, labels)
    assert set(parts) >= {"cls", "box", "corner", "vote", "sa_ins", "heading_bin", "heading_res", "num_pos"}
    focal, _ = IASSDLoss(cls_loss="focal")(out, boxes, labels, model.coder, [False, True, True, False])
    assert torch.isfinite(focal) and not torch.isclose(focal, total)
    total.backward()
    assert torch.isfinite(total)
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    ri_params = [name for name in grads if "ri_" in name]
    assert bool(ri_params) == rotation_invariant
    assert all(grads[name] is not None for name in ri_params)


def rot_z(points: torch.Tensor, angle: float) -> torch.Tensor:
    out = points.clone()
    out[..., :3] = rotate_points_along_z(points[None, :, :3], points.new_tensor([angle]))[0]
    return out


def test_ride_classification_invariant_to_scene_rotation():
    """RIDE's scores do not change when the scene rotates about z (the host's do), given rotation-consistent sampling.

    D-FPS depends on distances only, so it picks the same indices in the rotated scene (checked below); the votes are
    kept at their origins (``max_translate_range=0``) because the OA vote offsets are not rotation-equivariant.
    """
    consistent = {"sample_methods": ("D-FPS",) * 4, "max_translate_range": (0.0, 0.0, 0.0)}
    points = random_scene(batch=1, dtype=torch.float64, seed=3)
    gaps = {}
    for name, build in (("ride", ride_ia_ssd_tiny), ("host", ia_ssd_tiny)):
        torch.manual_seed(1)
        model = build(**consistent).double()
        with torch.no_grad():
            model.train()
            for _ in range(2):  # non-trivial BatchNorm running statistics
                model(random_scene(batch=2, dtype=torch.float64, seed=7))
            model.eval()
            ref = model(points)
            gaps[name] = 0.0
            for angle in (0.7, -2.3, math.pi / 2):
                out = model([rot_z(points[0], angle)])
                for level_ref, level in zip(ref["sa_xyz"], out["sa_xyz"]):  # same samples, rotated
                    torch.testing.assert_close(rot_z(level_ref[0], angle), level[0], atol=1e-9, rtol=0)
                diff = (out["cls_logits"].sigmoid() - ref["cls_logits"].sigmoid()).abs().max().item()
                gaps[name] = max(gaps[name], diff)
    assert gaps["ride"] < 1e-4, gaps
    assert gaps["host"] > 1e-3, gaps


@pytest.mark.parametrize("rotation_invariant", [False, True])
def test_loss_decreases_when_overfitting_two_objects(rotation_invariant):
    points, boxes, labels = object_scene()
    torch.manual_seed(0)
    model = ride_ia_ssd_tiny() if rotation_invariant else ia_ssd_tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        total, parts = model.loss(model([points]), [boxes], [labels])
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({k: v.item() for k, v in parts.items()} | {"total": total.item()})
    first, last = history[:5], history[-5:]

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    assert mean(last, "total") < 0.7 * mean(first, "total"), [h["total"] for h in history]
    for key in ("sa_ins", "box_xyzlwh", "heading_bin"):
        assert mean(last, key) < mean(first, key), key
    assert mean(last, "num_pos") > 0


def test_predict_boxes_and_nms():
    model = ia_ssd_tiny().eval()
    with torch.no_grad():
        out = model(random_scene())
    results = model.predict_boxes(out, score_threshold=0.0, nms_iou=0.01, max_boxes=5)
    assert len(results) == 2
    for r in results:
        assert r["boxes"].shape[1] == 7 and 1 <= len(r["boxes"]) <= 5
        assert r["scores"].shape == r["labels"].shape == r["boxes"].shape[:1]
        assert (r["scores"][:-1] >= r["scores"][1:]).all() and r["labels"].min() >= 1
    boxes = torch.tensor(
        [
            [0.0, 0, 0, 4, 2, 1.5, 0.0],
            [0.2, 0, 0, 4, 2, 1.5, 0.1],
            [10.0, 0, 0, 4, 2, 1.5, 0.0],
            [0.0, 0, 0, 4, 2, 1.5, 1.5708],
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # two thin boxes crossing at 90 degrees: little rotated overlap (an axis-aligned NMS would merge them)
    cross = torch.tensor([[0.0, 0, 0, 4, 0.5, 1.5, math.pi / 4], [0.0, 0, 0, 4, 0.5, 1.5, -math.pi / 4]])
    assert bev_nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # the crossed box overlaps box 0 by 1/3 only
    assert bev_nms(boxes, scores, 0.2).tolist() == [3, 2]
    assert bev_nms(cross, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]


def test_points_in_boxes_and_coder():
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.0, 0, 0, 4, 2, 1, 0.5], [1.0, 0.5, 0, 1, 1, 1, -0.3]])
    points = torch.rand(500, 3, generator=g) * 6 - 3
    idx = points_in_boxes(points, boxes)
    for p, i in zip(points, idx.tolist()):  # naive: transform into each box frame
        inside = []
        for j, bx in enumerate(boxes):
            local = rotate_points_along_z((p - bx[:3])[None, None], -bx[6:7])[0, 0]
            inside.append(bool((local.abs() < bx[3:6] / 2).all()))
        assert i == (inside.index(True) if any(inside) else -1)
    corners = boxes_to_corners_3d(boxes)
    assert corners.shape == (2, 8, 3)
    torch.testing.assert_close(corners.mean(1), boxes[:, :3])

    coder = PointBinResidualCoder(((3.9, 1.6, 1.56), (0.8, 0.6, 1.73)), num_bins=12)
    gt = torch.tensor([[5.0, 1.0, -1.0, 4.2, 1.7, 1.5, 2.9], [3.0, -2.0, -0.5, 0.7, 0.5, 1.8, -3.1]])
    pts = torch.tensor([[4.0, 0.0, -1.2], [3.5, -1.0, 0.0]])
    cls = torch.tensor([1, 2])
    target = coder.encode(gt, pts, cls)
    assert target.shape == (2, 8) and (target[:, 7].abs() <= 1).all()
    pred = torch.zeros(2, coder.code_size)
    pred[:, :6] = target[:, :6]
    pred[torch.arange(2), 6 + target[:, 6].long()] = 5.0
    pred[torch.arange(2), 18 + target[:, 6].long()] = target[:, 7]
    torch.testing.assert_close(coder.decode(pred, pts, cls), gt)
    wrapped = gt.clone()
    wrapped[:, 6] += 2 * math.pi  # yaw outside [-pi, pi) encodes like its wrapped value
    torch.testing.assert_close(coder.encode(wrapped, pts, cls), target, atol=1e-5, rtol=0)


def _official_param_count(rotation_invariant: bool) -> int:
    """Parameter count from IA-SSD.yaml, written out independently of the module code."""

    def conv_bn(chain):  # 1x1 conv without bias + BatchNorm (weight, bias)
        return sum(a * b + 2 * b for a, b in itertools.pairwise(chain))

    def fc(cin, hidden, out):  # Linear without bias + BN per hidden layer, final Linear with bias
        chain = [cin, *hidden]
        return conv_bn(chain) + chain[-1] * out + out

    grouping_layers = [  # (input channels, MLPs, aggregation, confidence); SA3 only gathers (no parameters)
        (1, [[16, 16, 32], [32, 32, 64]], 64, None),
        (64, [[64, 64, 128], [64, 96, 128]], 128, [128]),
        (128, [[128, 128, 256], [128, 256, 256]], 256, [256]),
        (256, [[256, 256, 512], [256, 512, 1024]], 512, None),  # the centre layer (groups SA2 points)
    ]
    total = 0
    for cin, mlps, agg, conf in grouping_layers:
        for extra in (3, 9) if rotation_invariant else (3,):  # OA: +xyz; RI: +9 RI channels
            total += sum(conv_bn([cin + extra, *m]) for m in mlps)
            total += conv_bn([sum(m[-1] for m in mlps), agg])
        if conf:
            total += conv_bn([agg, *conf]) + conf[-1] * 3 + 3
    total += conv_bn([256, 128]) + 128 * 3 + 3  # vote layer
    if rotation_invariant:
        total += fc(512, [256, 256], 3) + fc(1024, [256, 256], 6) + fc(512, [256, 256], 24)
    else:
        total += fc(512, [256, 256], 3) + fc(512, [256, 256], 30)
    return total


def test_official_parameter_counts():
    host, ride = ia_ssd(), ride_ia_ssd()
    n_host = sum(p.numel() for p in host.parameters())
    n_ride = sum(p.numel() for p in ride.parameters())
    assert n_host == _official_param_count(False) == 2_697_642
    assert n_ride == _official_param_count(True) == 5_208_650
    assert create_model("ride_ia_ssd_tiny").rotation_invariant


def test_bad_input_is_named():
    model = ia_ssd_tiny()
    with pytest.raises(ValueError, match=r"`points\[1\]` must be a floating \(N, 4\)"):
        model([torch.rand(1024, 4), torch.rand(1024, 3)])
    with pytest.raises(ValueError, match="same number of points"):
        model([torch.rand(1024, 4), torch.rand(900, 4)])
    out = model(random_scene(batch=1))
    with pytest.raises(ValueError, match=r"`boxes\[0\]`"):
        model.loss(out, [torch.zeros(2, 6)], [torch.ones(2, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"`labels\[0\]` must be 1-based"):
        model.loss(out, [torch.zeros(1, 7)], [torch.zeros(1, dtype=torch.long)])
    with pytest.raises(ValueError, match="no confidence MLP"):
        IASSD(confidence_mlps=((), (), (), ()))
