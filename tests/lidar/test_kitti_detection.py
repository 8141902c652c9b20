"""KITTI object evaluation: perfect predictions, hand-computed precision/recall curves, the ignore rules (DontCare,
Van, minimum height, occlusion), empty inputs, input errors, a loop-based reference on random scenes, and DDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_hpml.metrics.kitti_detection import KITTIDetectionAP, kitti_detection_ap
from lightning_hpml.metrics.rotated_iou import camera_boxes_bev_iou, camera_boxes_iou_3d

DIMS = {"Car": (1.5, 1.6, 3.9), "Van": (2.2, 1.9, 5.0), "Truck": (3.0, 2.5, 10.0), "Pedestrian": (1.7, 0.6, 0.8),
        "Person_sitting": (1.2, 0.6, 0.8), "Cyclist": (1.7, 0.6, 1.8), "DontCare": (-1.0, -1.0, -1.0)}  # fmt: skip


def obj(name: str = "Car", *, u: float = 100.0, h_px: float = 50.0, x: float = 0.0, z: float = 20.0, **kw) -> dict:
    """One object; 2D box ``[u, 100, u + 80, 100 + h_px]``, 3D box at ``(x, 1.6, z)``."""
    out = {"name": name, "truncated": 0.0, "occluded": 0, "alpha": 0.0, "bbox": [u, 100.0, u + 80.0, 100.0 + h_px],
           "dimensions": DIMS[name], "location": [x, 1.6, z], "rotation_y": 0.0}  # fmt: skip
    out.update(kw)
    return out


def frame(objs: list[dict], scores: list[float] | None = None) -> dict:
    widths = {"bbox": 4, "dimensions": 3, "location": 3}
    out = {}
    for key in ("truncated", "occluded", "alpha", "bbox", "dimensions", "location", "rotation_y"):
        values = np.array([o[key] for o in objs], dtype=np.float64)
        out[key] = values.reshape(len(objs), widths[key]) if key in widths else values.reshape(len(objs))
    out["name"] = np.array([o["name"] for o in objs], dtype=object)  # object: renaming in place is not truncated
    if scores is not None:
        out["score"] = np.array(scores, dtype=np.float64)
    return out


def perfect_scene(n: int, classes=("Car",)) -> tuple[list[dict], list[dict]]:
    """``n`` frames, each with one object per class (side by side) detected exactly; scores decrease per frame."""
    gts, dts = [], []
    for i in range(n):
        objs = [obj(c, u=100.0 + 200 * k, x=6.0 * k, alpha=0.3) for k, c in enumerate(classes)]
        gts.append(frame(objs))
        dts.append(frame(objs, [1.0 - i / 1000] * len(objs)))
    return gts, dts


FAR_FP = {"u": 900.0, "x": 15.0, "z": 45.0}  # overlaps no ground truth in 2D, BEV or 3D


# ------------------------------------------------------------------------------------------------- perfect / empty
def test_perfect_predictions_give_exactly_100_everywhere() -> None:
    gts, dts = perfect_scene(45, ("Car", "Pedestrian", "Cyclist"))
    gts[0] = frame([obj("Car", alpha=0.3), obj("DontCare", u=600.0), obj("Van", u=400, x=9.0)])  # extras: no effect
    dts[0] = frame([obj("Car", alpha=0.3)], [1.0])
    gts[1]["name"][1] = "Person_sitting"  # ignored neighbour class, not detected
    res = kitti_detection_ap(dts, gts, include_loose=True)
    assert len(res) == 4 * 3 * 2 * 4 * 2  # {2d,bev,3d,aos} x 3 difficulties x {r40,r11} x (3 classes + mean) x 2 sets
    for key, value in res.items():
        assert value.item() == 100.0, key
    for key in ("ap3d_car_mod_r40", "apbev_car_easy_r11", "ap2d_pedestrian_hard_r40", "aos_car_mod_r40",
                "ap3d_mod_r40", "ap3d_cyclist_easy_r40_loose"):  # fmt: skip
        assert key in res


def test_few_ground_truths_are_sampled_sparsely_like_the_official_code() -> None:
    # 2 counted ground truths, both found: the 41-point sampling yields only 2 thresholds (recall 1/2 and 1), and the
    # official code puts their precision (1, 1) at sample positions 0 and 1, leaving 2..40 at 0:
    # AP_R40 = (positions 1..40) = 1/40 = 2.5 %, AP_R11 = (positions 0, 4, ..) = 1/11 = 9.09 %.
    gts, dts = perfect_scene(2)
    res = kitti_detection_ap(dts, gts, classes=["Car"])
    assert res["ap3d_car_mod_r40"].item() == pytest.approx(2.5)
    assert res["ap3d_car_mod_r11"].item() == pytest.approx(100 / 11)
    gts, dts = perfect_scene(40)  # 40 thresholds: position 40 stays 0 -> 39/40; from 41 ground truths on: 100
    assert kitti_detection_ap(dts, gts, classes=["Car"])["ap2d_car_easy_r40"].item() == pytest.approx(97.5)
    gts, dts = perfect_scene(41)
    assert kitti_detection_ap(dts, gts, classes=["Car"])["ap2d_car_easy_r40"].item() == 100.0


def test_no_predictions_give_zero_ap_and_no_nan() -> None:
    gts, _ = perfect_scene(10, ("Car", "Pedestrian"))
    empty = [frame([], []) for _ in gts]
    res = kitti_detection_ap(empty, gts)
    assert all(v.item() == 0.0 for v in res.values())
    metric = KITTIDetectionAP()  # nothing seen at all
    with pytest.warns(UserWarning, match="before the ``update``"):
        values = metric.compute().values()
    assert all(v.item() == 0.0 and not math.isnan(v.item()) for v in values)


def test_class_without_ground_truth_has_ap_zero_and_others_are_unaffected() -> None:
    # Documented behaviour (as OpenPCDet): no counted ground truth -> no recall threshold -> AP 0 (not NaN); the
    # mean over classes includes that 0.
    gts, dts = perfect_scene(45)
    dts[3] = frame([obj("Car", alpha=0.3), obj("Cyclist", u=400.0, x=5.0)], [dts[3]["score"][0], 0.9])
    res = kitti_detection_ap(dts, gts)
    assert res["ap3d_car_mod_r40"].item() == 100.0
    assert res["ap3d_cyclist_mod_r40"].item() == 0.0 and res["ap3d_pedestrian_mod_r40"].item() == 0.0
    assert res["ap3d_mod_r40"].item() == pytest.approx(100 / 3)


# ---------------------------------------------------------------------------------------------- hand-computed case
def test_hand_computed_curve_half_recall_interleaved_false_positives() -> None:
    """80 cars (one per frame). Frames 0..39: detected exactly, score t_i = 1 - i/100, detected alpha off by pi/2.
    Frames 40..79: missed, but each holds a far false positive of score t_j - 0.005 (j = 0..39).

    At threshold t_i: tp = i + 1, fp = i (the false positives scored above t_i), precision (i + 1) / (2i + 1).
    Recall sampling (80 ground truths, 40 true-positive scores): a threshold is kept at i = 0 and then whenever
    recall (i + 1)/80 reaches the next multiple of 1/40 within half a step, i.e. at i = 1, 3, 5, ..., 39:
    precision p_0 = 1, p_k = 2k / (4k - 1) for k = 1..20, and p_21..p_40 = 0 (recall never exceeds 1/2).
    AP_R40 = sum_{k=1..20} p_k / 40; AP_R11 = (p_0 + p_4 + p_8 + p_12 + p_16 + p_20) / 11.
    AOS: every true positive has similarity (1 + cos(pi/2)) / 2 = 1/2, so AOS = AP / 2.
    """
    gts, dts = [], []
    for i in range(80):
        gts.append(frame([obj("Car")]))
        if i < 40:
            dts.append(frame([obj("Car", alpha=math.pi / 2)], [1 - i / 100]))
        else:
            dts.append(frame([obj("Car", **FAR_FP)], [1 - (i - 40) / 100 - 0.005]))
    p = [1.0] + [2 * k / (4 * k - 1) for k in range(1, 21)]
    expected_r40 = sum(p[1:]) / 40 * 100
    expected_r11 = sum(p[0:21:4]) / 11 * 100
    res = kitti_detection_ap(dts, gts, classes=["Car"])
    for metric in ("ap2d", "apbev", "ap3d"):
        for difficulty in ("easy", "mod", "hard"):
            assert res[f"{metric}_car_{difficulty}_r40"].item() == pytest.approx(expected_r40, abs=1e-4)
            assert res[f"{metric}_car_{difficulty}_r11"].item() == pytest.approx(expected_r11, abs=1e-4)
    assert res["aos_car_mod_r40"].item() == pytest.approx(expected_r40 / 2, abs=1e-4)
    assert expected_r40 == pytest.approx(26.2794, abs=1e-4) and expected_r11 == pytest.approx(32.4942, abs=1e-4)


def test_half_recall_without_false_positives_is_50_r40() -> None:
    # Same as above without false positives: p_0..p_20 = 1 -> AP_R40 = 20/40 = 50, AP_R11 = 6/11.
    gts = [frame([obj("Car")]) for _ in range(80)]
    dts = [frame([obj("Car")], [1 - i / 100]) if i < 40 else frame([], []) for i in range(80)]
    res = kitti_detection_ap(dts, gts, classes=["Car"])
    assert res["ap3d_car_hard_r40"].item() == pytest.approx(50.0)
    assert res["ap3d_car_hard_r11"].item() == pytest.approx(600 / 11)


def test_strict_iou_threshold_and_loose_set() -> None:
    # A detection shifted 1 m along its length: 3D IoU 2.9 / 4.9 = 0.59, a miss at 0.7 (strict) but a hit at 0.5
    # (loose BEV/3D), while its 2D box is exact.
    gts, dts = perfect_scene(45)
    shifted = [dict(d, location=d["location"] + np.array([[1.0, 0.0, 0.0]])) for d in dts]
    iou = camera_boxes_iou_3d(torch.tensor([[1.0, 1.6, 20.0, 1.5, 1.6, 3.9, 0.0]]),
                              torch.tensor([[0.0, 1.6, 20.0, 1.5, 1.6, 3.9, 0.0]])).item()  # fmt: skip
    assert 0.5 < iou < 0.7
    res = kitti_detection_ap(shifted, gts, classes=["Car"], include_loose=True)
    assert res["ap2d_car_mod_r40"].item() == 100.0 and res["ap3d_car_mod_r40"].item() == 0.0
    assert res["ap3d_car_mod_r40_loose"].item() == 100.0 and res["apbev_car_mod_r40_loose"].item() == 100.0
    custom = kitti_detection_ap(shifted, gts, classes=["Car"], min_overlaps={"Car": (0.7, 0.55, 0.55)})
    assert custom["ap3d_car_mod_r40"].item() == 100.0


# ---------------------------------------------------------------------------------------------------- ignore rules
def test_dontcare_suppresses_false_positives_for_the_2d_metric_only() -> None:
    gts, dts = perfect_scene(50)
    fp = obj("Car", u=610.0, h_px=40.0, x=15.0, z=45.0)  # 2D box [610, 100, 690, 140]
    dts[0] = frame([obj("Car", alpha=0.3), fp], [dts[0]["score"][0], 2.0])  # top-scored false positive
    with_dc = list(gts)
    with_dc[0] = frame([obj("Car", alpha=0.3), obj("DontCare", u=600.0, h_px=60.0)])  # covers the FP's 2D box
    res = kitti_detection_ap(dts, with_dc, classes=["Car"])
    plain = kitti_detection_ap(dts, gts, classes=["Car"])
    assert res["ap2d_car_mod_r40"].item() == 100.0  # suppressed in 2D
    assert plain["ap2d_car_mod_r40"].item() < 100.0  # without the DontCare box it is a false positive
    # BEV and 3D: not suppressed (OpenPCDet), the same single false positive as the plain 2D case.
    for key in ("apbev_car_mod_r40", "ap3d_car_mod_r40", "ap3d_car_easy_r11"):
        assert res[key].item() == pytest.approx(plain[key.replace("apbev", "ap2d").replace("ap3d", "ap2d")].item())


def test_van_is_ignored_for_car_but_truck_is_not() -> None:
    gts, dts = perfect_scene(50)
    score = dts[0]["score"][0]
    gts[0] = frame([obj("Car", alpha=0.3), obj("Van", u=400.0, x=6.0)])
    van_sized_car = obj("Car", u=400.0, x=6.0, dimensions=DIMS["Van"])
    dts[0] = frame([obj("Car", alpha=0.3), van_sized_car], [score, 2.0])  # a "Car" detection on the van
    gts[1] = frame([obj("Car", alpha=0.3), obj("Van", u=400.0, x=6.0)])  # a van nobody detects: not a miss
    assert kitti_detection_ap(dts, gts, classes=["Car"])["ap3d_car_mod_r40"].item() == 100.0
    gts[0]["name"][1] = "Truck"  # a truck is not a neighbour class: the detection becomes a false positive
    assert kitti_detection_ap(dts, gts, classes=["Car"])["ap3d_car_mod_r40"].item() < 100.0
    gts[0]["name"][1] = "Van"
    no_ignore = kitti_detection_ap(dts, gts, classes=["Car"], ignore_classes={})
    assert no_ignore["ap3d_car_mod_r40"].item() < 100.0


def test_minimum_height_occlusion_and_truncation_per_difficulty() -> None:
    gts, dts = perfect_scene(50)
    s0 = dts[0]["score"][0]
    dts[0] = frame([obj("Car", alpha=0.3), obj("Car", h_px=30.0, **FAR_FP)], [s0, 2.0])  # 30 px false positive
    res = kitti_detection_ap(dts, gts, classes=["Car"])
    assert res["ap3d_car_easy_r40"].item() == 100.0  # below 40 px: ignored for Easy
    assert res["ap3d_car_mod_r40"].item() < 100.0  # counts for Moderate (>= 25 px)

    gts, dts = perfect_scene(50)
    gts[0] = frame([obj("Car", alpha=0.3), obj("Car", u=400, x=6.0, h_px=40.0)])  # exactly 40 px, not detected
    gts[1] = frame([obj("Car", alpha=0.3), obj("Car", u=400, x=6.0, occluded=1)])  # partly occluded, not detected
    gts[2] = frame([obj("Car", alpha=0.3), obj("Car", u=400, x=6.0, truncated=0.2)])  # truncated, not detected
    res = kitti_detection_ap(dts, gts, classes=["Car"])
    assert res["ap3d_car_easy_r40"].item() == 100.0  # height <= 40, occlusion > 0, truncation > 0.15: ignored
    assert res["ap3d_car_mod_r40"].item() < 100.0  # all three count as misses for Moderate
    gts[0]["bbox"][1, 3] = 100.0 + 20.0  # 20 px: ignored for every difficulty
    gts[1]["occluded"][1], gts[2]["truncated"][1] = 3, 0.6
    assert kitti_detection_ap(dts, gts, classes=["Car"])["ap3d_car_hard_r40"].item() == 100.0


# ------------------------------------------------------------------------------------------------- class / errors
def test_class_and_functional_agree_and_batching_does_not_matter() -> None:
    rng = np.random.default_rng(5)
    gts, dts = random_scene(rng, 20)
    metric = KITTIDetectionAP(include_loose=True)
    for i in range(0, 20, 6):
        metric.update(dts[i : i + 6], gts[i : i + 6])
    result = metric.compute()
    expected = kitti_detection_ap(dts, gts, include_loose=True)
    assert result.keys() == expected.keys()
    for key in expected:
        assert result[key].item() == pytest.approx(expected[key].item()), key
    metric.reset()
    metric.update(
        [{k: torch.as_tensor(v) if k != "name" else v for k, v in d.items()} for d in dts],
        [{k: torch.as_tensor(v) if k != "name" else v for k, v in g.items()} for g in gts],
    )
    assert metric.compute()["ap3d_car_mod_r40"].item() == pytest.approx(expected["ap3d_car_mod_r40"].item())


def test_bad_input_names_the_key_and_shape() -> None:
    gts, dts = perfect_scene(2)
    with pytest.raises(ValueError, match=r"predictions\[0\]: missing key\(s\) \['score'\]"):
        kitti_detection_ap([{k: v for k, v in dts[0].items() if k != "score"}, dts[1]], gts)
    bad = dict(gts[1], bbox=np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"ground_truth\[1\]: `bbox` must have shape \(1, 4\)"):
        kitti_detection_ap(dts, [gts[0], bad])
    with pytest.raises(ValueError, match="same frames"):
        kitti_detection_ap(dts, gts[:1])
    with pytest.raises(ValueError, match="no default IoU thresholds for class 'tram'"):
        KITTIDetectionAP(classes=["Car", "Tram"])
    with pytest.raises(ValueError, match="non-finite"):
        kitti_detection_ap([dict(dts[0], score=np.array([np.nan])), dts[1]], gts)


# -------------------------------------------------------------------------------- loop-based reference, random scenes
NAMES = ["Car", "Car", "Car", "Van", "Truck", "Pedestrian", "Pedestrian", "Person_sitting", "Cyclist", "DontCare"]
OVERLAPS = {"car": {"strict": (0.7, 0.7, 0.7), "loose": (0.7, 0.5, 0.5)},
            "pedestrian": {"strict": (0.5, 0.5, 0.5), "loose": (0.5, 0.25, 0.25)},
            "cyclist": {"strict": (0.5, 0.5, 0.5), "loose": (0.5, 0.25, 0.25)}}  # fmt: skip
NEIGHBOUR = {"car": "van", "pedestrian": "person_sitting"}


def random_scene(rng: np.random.Generator, n_frames: int) -> tuple[list[dict], list[dict]]:
    gts, dts = [], []
    for _ in range(n_frames):
        g_objs, d_objs, scores = [], [], []
        for _ in range(rng.integers(0, 7)):
            name = NAMES[rng.integers(len(NAMES))]
            h_px = float(rng.uniform(15, 90))
            u = float(rng.uniform(0, 1000))
            o = obj(name, u=u, h_px=h_px, x=float(rng.uniform(-8, 8)), z=float(rng.uniform(5, 40)),
                    rotation_y=float(rng.uniform(-3, 3)), alpha=float(rng.uniform(-3, 3)),
                    occluded=int(rng.integers(0, 4)), truncated=float(rng.choice([0.0, 0.1, 0.2, 0.4, 0.6])))  # fmt: skip
            o["bbox"] = [u, 100.0, u + 1.5 * h_px, 100.0 + h_px]
            g_objs.append(o)
            if name != "DontCare" and rng.random() < 0.85:
                d = dict(o, truncated=-1.0, occluded=-1)
                d["location"] = list(np.array(o["location"]) + rng.normal(0, 0.15, 3))
                d["rotation_y"] = o["rotation_y"] + rng.normal(0, 0.1)
                d["alpha"] = o["alpha"] + rng.normal(0, 0.5)
                d["bbox"] = list(np.array(o["bbox"]) + rng.normal(0, 3.0, 4))
                if rng.random() < 0.1:
                    d["name"] = "Pedestrian" if name != "Pedestrian" else "Cyclist"
                d_objs.append(d)
                scores.append(float(rng.random()))
        for _ in range(rng.integers(0, 3)):  # clutter
            name = ["Car", "Pedestrian", "Cyclist"][rng.integers(3)]
            h_px = float(rng.uniform(15, 90))
            u = float(rng.uniform(0, 1000))
            d = obj(name, u=u, h_px=h_px, x=float(rng.uniform(-8, 8)), z=float(rng.uniform(5, 40)))
            d_objs.append(d)
            scores.append(float(rng.random()))
        gts.append(frame(g_objs))
        dts.append(frame(d_objs, scores))
    return gts, dts


def iou2d(a: np.ndarray, b: np.ndarray, over_first_area: bool = False) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw, ih = min(p[2], q[2]) - max(p[0], q[0]), min(p[3], q[3]) - max(p[1], q[1])
            if iw > 0 and ih > 0:
                area_p, area_q = (p[2] - p[0]) * (p[3] - p[1]), (q[2] - q[0]) * (q[3] - q[1])
                out[i, j] = iw * ih / (area_p if over_first_area else area_p + area_q - iw * ih)
    return out


def camera(f: dict) -> torch.Tensor:
    return torch.from_numpy(np.c_[f["location"], f["dimensions"], f["rotation_y"]])


def reference_curves(gts, dts, cls: str, diff: int, metric: str, min_ov: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame loops written from the rules in the module docstring (independent of the vectorised code)."""
    min_h, max_occ, max_tr = (40, 25, 25)[diff], (0, 1, 2)[diff], (0.15, 0.3, 0.5)[diff]
    prepared, n_valid = [], 0
    for g, d in zip(gts, dts):
        names = [n.lower() for n in g["name"]]
        ign_g = []
        for k, n in enumerate(names):
            height = g["bbox"][k, 3] - g["bbox"][k, 1]
            hidden = g["occluded"][k] > max_occ or g["truncated"][k] > max_tr or height <= min_h
            if n == cls and not hidden:
                ign_g.append(0)
            elif n == cls or NEIGHBOUR.get(cls) == n:
                ign_g.append(1)
            else:
                ign_g.append(-1)
        n_valid += ign_g.count(0)
        ign_d = []
        for k, n in enumerate(d["name"]):
            if abs(d["bbox"][k, 3] - d["bbox"][k, 1]) < min_h:
                ign_d.append(1)
            else:
                ign_d.append(0 if n.lower() == cls else -1)
        if metric == "bbox":
            ov = iou2d(d["bbox"], g["bbox"])
        else:
            fn = camera_boxes_bev_iou if metric == "bev" else camera_boxes_iou_3d
            ov = fn(camera(d), camera(g)).numpy() if len(d["name"]) and len(g["name"]) else np.zeros((0, 0))
        dc = g["bbox"][[n == "dontcare" for n in names]]
        dc_ov = iou2d(d["bbox"], dc, over_first_area=True)
        prepared.append((ign_g, ign_d, ov, dc_ov, g["alpha"], d["alpha"], d["score"]))

    scores = []
    for ign_g, ign_d, ov, _, _, _, sc in prepared:
        used = [False] * len(ign_d)
        for gi, ig in enumerate(ign_g):
            if ig == -1:
                continue
            best, best_score = -1, -np.inf
            for dj, idj in enumerate(ign_d):
                if idj != -1 and not used[dj] and ov[dj, gi] > min_ov and sc[dj] > best_score:
                    best, best_score = dj, sc[dj]
            if best >= 0:
                used[best] = True
                if ig == 0 and ign_d[best] == 0:
                    scores.append(sc[best])
    thresholds, current = [], 0.0
    scores = sorted(scores, reverse=True)
    for i, s in enumerate(scores):
        last = i == len(scores) - 1
        left, right = (i + 1) / n_valid, ((i + 2) / n_valid if not last else (i + 1) / n_valid)
        if last or not (right - current) < (current - left):
            thresholds.append(s)
            current += 1 / 40.0

    prec, aos = np.zeros(41), np.zeros(41)
    for t_i, t in enumerate(thresholds):
        tp = fp = 0
        sim = 0.0
        for ign_g, ign_d, ov, dc_ov, ga, da, sc in prepared:
            used = [False] * len(ign_d)
            for gi, ig in enumerate(ign_g):
                if ig == -1:
                    continue
                pick, pick_ov, pick_counted = -1, -1.0, False
                for dj, idj in enumerate(ign_d):
                    if idj == -1 or used[dj] or sc[dj] < t or not ov[dj, gi] > min_ov:
                        continue
                    if idj == 0 and ov[dj, gi] > pick_ov:
                        pick, pick_ov, pick_counted = dj, ov[dj, gi], True
                    elif idj == 1 and pick == -1:
                        pick = dj
                if pick >= 0:
                    used[pick] = True
                    if ig == 0 and pick_counted:
                        tp += 1
                        sim += (1 + math.cos(ga[gi] - da[pick])) / 2
            for dj, idj in enumerate(ign_d):
                if idj == 0 and not used[dj] and sc[dj] >= t:
                    dontcare = metric == "bbox" and dc_ov.shape[1] and dc_ov[dj].max() > min_ov
                    fp += 0 if dontcare else 1
        prec[t_i] = tp / (tp + fp) if tp + fp else 0.0
        aos[t_i] = sim / (tp + fp) if tp + fp else 0.0
    for i in range(40, -1, -1):
        prec[i] = max(prec[i:])
        aos[i] = max(aos[i:])
    return prec, aos


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference_on_random_scenes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gts, dts = random_scene(rng, 30)
    res = kitti_detection_ap(dts, gts, include_loose=True)
    nonzero = 0
    for cls in ("car", "pedestrian", "cyclist"):
        for diff, dname in enumerate(("easy", "mod", "hard")):
            for set_name, suffix in (("strict", ""), ("loose", "_loose")):
                for mi, (metric, prefix) in enumerate((("bbox", "ap2d"), ("bev", "apbev"), ("3d", "ap3d"))):
                    prec, aos = reference_curves(gts, dts, cls, diff, metric, OVERLAPS[cls][set_name][mi])
                    got = res[f"{prefix}_{cls}_{dname}_r40{suffix}"].item()
                    assert got == pytest.approx(prec[1:].sum() / 40 * 100, abs=1e-4), (cls, dname, metric, set_name)
                    got11 = res[f"{prefix}_{cls}_{dname}_r11{suffix}"].item()
                    assert got11 == pytest.approx(prec[::4].sum() / 11 * 100, abs=1e-4)
                    if metric == "bbox":
                        assert res[f"aos_{cls}_{dname}_r40{suffix}"].item() == pytest.approx(
                            aos[1:].sum() / 40 * 100, abs=1e-4
                        )
                    nonzero += got > 0
    assert nonzero > 20  # the scenes produce non-trivial curves


# ----------------------------------------------------------------------------------------------------------- DDP
def test_gathered_list_states_evaluate_the_union_of_frames() -> None:
    """What DDP does at ``compute``: each state is gathered from every rank and concatenated. Emulated in-process
    through torchmetrics' own ``dist_sync_fn`` hook (rank 0's view; rank 1 holds more frames, in two batches), so
    the test exercises the real sync code path without spawning processes."""
    gts, dts = random_scene(np.random.default_rng(9), 24)
    expected = {k: v.item() for k, v in kitti_detection_ap(dts, gts).items()}
    alone = {k: v.item() for k, v in kitti_detection_ap(dts[:7], gts[:7]).items()}
    assert any(abs(alone[k] - expected[k]) > 1 for k in expected)  # the split really changes the result

    rank1 = KITTIDetectionAP()
    rank1.update(dts[7:15], gts[7:15])
    rank1.update(dts[15:], gts[15:])
    other = iter([torch.cat(getattr(rank1, name)) for name in ("pred_rows", "pred_counts", "gt_rows", "gt_counts")])

    def all_gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [tensor, next(other)]

    rank0 = KITTIDetectionAP(dist_sync_fn=all_gather, distributed_available_fn=lambda: True)
    rank0.update(dts[:7], gts[:7])
    result = rank0.compute()
    for key, value in expected.items():
        assert result[key].item() == pytest.approx(value, abs=1e-4), key
    assert len(rank0.gt_rows) == 1 and rank0.gt_rows[0].shape[0] == sum(len(g["name"]) for g in gts[:7])  # unsynced
