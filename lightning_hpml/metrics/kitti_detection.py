r"""KITTI 3D object detection evaluation: AP (R11 and R40) for 2D boxes, BEV and 3D boxes, and AOS.

References:
    - A. Geiger, P. Lenz, R. Urtasun, "Are we ready for Autonomous Driving? The KITTI Vision Benchmark Suite",
      CVPR 2012 (benchmark, difficulties, AP and AOS).
    - The official object development kit (``devkit_object``, ``cpp/evaluate_object.cpp``), and its 40-recall-point
      revision (AP_R40, Simonelli et al., "Disentangling Monocular 3D Object Detection", ICCV 2019).
    - OpenPCDet's python port ``pcdet/datasets/kitti/kitti_object_eval_python/eval.py`` (numba/CUDA), the
      evaluator LiDAR detectors report with. This module reimplements its rules from the facts listed below; no code
      copied. Matching is vectorised over frames and score thresholds instead of looping per frame.

Rules (per class, difficulty, metric and overlap threshold):
    - Ground truth: a box of the class counts (``ignored_gt = 0``) unless its occlusion > 0/1/2, truncation
      > 0.15/0.3/0.5 or 2D height ``b - t`` <= 40/25/25 px (Easy/Moderate/Hard), in which case it is ignored (1).
      Boxes of the "neighbour" class (Van for Car, Person_sitting for Pedestrian; ``ignore_classes``) are ignored (1);
      other classes are irrelevant (-1). ``DontCare`` boxes are kept as "don't care" regions.
    - Detections: ignored (1) if their 2D height ``|b - t|`` < 40/25/25 px (whatever their class, as in the official
      code), otherwise counted (0) if of the class, else irrelevant (-1).
    - Overlap: 2D box IoU (``bbox``), rotated IoU in the camera ``x-z`` plane (``bev``), rotated 3D IoU with the
      height overlap along camera ``y`` (``3d``), see :mod:`lightning_hpml.metrics.rotated_iou`. A match needs
      IoU **strictly greater** than the threshold: Car 0.7/0.7/0.7, Pedestrian and Cyclist 0.5/0.5/0.5 (strict set);
      the loose set is Car 0.7/0.5/0.5, Pedestrian and Cyclist 0.5/0.25/0.25 (bbox/bev/3d).
    - Score thresholds: first every counted ground truth takes the highest-scoring free detection above the IoU
      threshold; the scores of the true positives are sampled at 41 evenly spaced recall positions (0, 1/40, ..., 1).
    - At each threshold, detections with a lower score are dropped; each ground truth (in label order) takes the free
      counted detection of largest IoU, else the first free ignored one. True positive: counted ground truth matched
      by a counted detection; false negative: counted ground truth without a match; matches involving an ignored
      box count as neither. False positives are the free counted detections, minus (``bbox`` metric only, as in
      OpenPCDet) those whose area lies more than the IoU threshold inside a ``DontCare`` box.
    - Precision is made monotone (maximum over higher-recall thresholds); AP_R40 = mean of positions 1..40, AP_R11
      = mean of positions 0, 4, ..., 40, in percent. **Sparse sampling** (official behaviour, kept): position ``k``
      holds the precision at the ``k``-th sampled threshold, not at recall ``k/40``; with fewer than 41 counted ground
      truths fewer than 41 thresholds exist and the remaining positions stay 0, so a perfect detector on 2 objects
      scores AP_R40 = 2.5 and AP_R11 = 9.1; 100 needs at least 41 counted ground truths. AOS uses the ``bbox`` matching with similarity
      ``(1 + cos(alpha_gt - alpha_det)) / 2`` per true positive, normalised by ``tp + fp``.

Deviations from OpenPCDet's evaluator (all deliberate):
    - Rotated IoU is exact in float64 (OpenPCDet: float32 polygon clipping on GPU/numba); results agree to round-off,
      which can only matter for IoUs within ~1e-6 of a threshold.
    - AOS is reported whenever ``compute_aos`` is True; OpenPCDet silently skips it when the first prediction's
      ``alpha`` is -10 (KITTI's "unknown").
    - A class/difficulty with no counted ground truth has AP 0 (as in OpenPCDet, whose sampling finds no threshold);
      the mAP summaries (``ap3d_mod_r40`` ...) average over all configured classes, including such zeros.
    - ``DontCare`` suppression is applied to the ``bbox`` metric only, as in OpenPCDet (its BEV/3D passes skip it);
      whether the C++ devkit's 3D evaluation also suppresses BEV/3D detections was not checked for this port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_hpml.metrics.rotated_iou import camera_boxes_bev_iou, camera_boxes_iou_3d

__all__ = ["KITTI_MIN_OVERLAPS", "KITTIDetectionAP", "KITTIEvalInputError", "kitti_detection_ap"]

KITTI_TYPES = ("car", "van", "truck", "pedestrian", "person_sitting", "cyclist", "tram", "misc", "dontcare")
DIFFICULTIES = ("easy", "mod", "hard")
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
NUM_SAMPLE_POINTS = 41
METRICS = ("bbox", "bev", "3d")
_METRIC_PREFIX = {"bbox": "ap2d", "bev": "apbev", "3d": "ap3d"}

#: IoU thresholds ``(bbox, bev, 3d)`` per lower-case class name, for the strict and the loose set (OpenPCDet table).
KITTI_MIN_OVERLAPS: dict[str, dict[str, tuple[float, float, float]]] = {
    "car": {"strict": (0.7, 0.7, 0.7), "loose": (0.7, 0.5, 0.5)},
    "pedestrian": {"strict": (0.5, 0.5, 0.5), "loose": (0.5, 0.25, 0.25)},
    "cyclist": {"strict": (0.5, 0.5, 0.5), "loose": (0.5, 0.25, 0.25)},
    "van": {"strict": (0.7, 0.7, 0.7), "loose": (0.7, 0.5, 0.5)},
    "person_sitting": {"strict": (0.5, 0.5, 0.5), "loose": (0.5, 0.25, 0.25)},
    "truck": {"strict": (0.7, 0.7, 0.7), "loose": (0.5, 0.5, 0.5)},
}
DEFAULT_IGNORE_CLASSES: dict[str, tuple[str, ...]] = {"car": ("van",), "pedestrian": ("person_sitting",)}

# Packed row layout shared by ground truth and predictions: code (class index, -1 unknown), truncated, occluded,
# alpha, bbox l t r b, dimensions h w l, location x y z, rotation_y; predictions append the score.
_GT_COLS, _DT_COLS = 15, 16
_FIELD_SHAPES = {
    "truncated": 1,
    "occluded": 1,
    "alpha": 1,
    "bbox": 4,
    "dimensions": 3,
    "location": 3,
    "rotation_y": 1,
    "score": 1,
}


class KITTIEvalInputError(ValueError):
    """A frame dict passed to the KITTI evaluator is missing a key or holds an array of the wrong shape."""


# ----------------------------------------------------------------------------------------------------------- input
def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _pack_frame(frame: Mapping[str, Any], vocab: Mapping[str, int], is_pred: bool, where: str) -> np.ndarray:
    """One frame dict -> ``(M, 15)`` (ground truth) or ``(M, 16)`` (predictions, + score) float64 rows."""
    if not isinstance(frame, Mapping):
        raise KITTIEvalInputError(f"{where}: expected a dict of KITTI label arrays, got {type(frame).__name__}")
    required = ["name", "alpha", "bbox", "dimensions", "location", "rotation_y"]
    required += ["score"] if is_pred else ["truncated", "occluded"]
    missing = [k for k in required if k not in frame]
    if missing:
        raise KITTIEvalInputError(f"{where}: missing key(s) {missing}; required: {required}")
    names = _to_numpy(frame["name"])
    if names.ndim != 1:
        raise KITTIEvalInputError(f"{where}: `name` must have shape (M,), got {names.shape}")
    m = names.shape[0]
    fields: dict[str, np.ndarray] = {}
    for key, width in _FIELD_SHAPES.items():
        if key not in frame:
            fields[key] = np.full((m, width), -1.0)  # prediction truncation/occlusion: unused
            continue
        arr = _to_numpy(frame[key])
        if m == 0 and arr.size == 0:
            arr = arr.reshape(0, width)
        expected = (m,) if width == 1 else (m, width)
        if arr.shape != expected and not (width == 1 and arr.shape == (m, 1)):
            raise KITTIEvalInputError(
                f"{where}: `{key}` must have shape {expected} (M={m} from `name`), got {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise KITTIEvalInputError(f"{where}: `{key}` must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64).reshape(m, width)
        if not np.isfinite(arr).all():
            raise KITTIEvalInputError(f"{where}: `{key}` holds non-finite values")
        fields[key] = arr
    codes = np.array([vocab.get(str(n).lower(), -1) for n in names.tolist()], dtype=np.float64).reshape(m, 1)
    parts = [codes, fields["truncated"], fields["occluded"], fields["alpha"], fields["bbox"], fields["dimensions"]]
    parts += [fields["location"], fields["rotation_y"]] + ([fields["score"]] if is_pred else [])
    return np.concatenate(parts, axis=1)


@dataclass
class _Boxes:
    """Concatenated boxes of all frames, in frame order (``counts[f]`` rows per frame)."""

    code: np.ndarray  # (K,) int
    truncated: np.ndarray
    occluded: np.ndarray
    alpha: np.ndarray
    bbox: np.ndarray  # (K, 4) l, t, r, b
    camera: np.ndarray  # (K, 7) x, y, z, h, w, l, rotation_y
    score: np.ndarray  # (K,) (zeros for ground truth)
    counts: np.ndarray  # (F,) int

    @classmethod
    def from_rows(cls, rows: np.ndarray, counts: np.ndarray) -> _Boxes:
        score = rows[:, 15] if rows.shape[1] > 15 else np.zeros(rows.shape[0])
        camera = np.concatenate([rows[:, 11:14], rows[:, 8:11], rows[:, 14:15]], axis=1)
        return cls(rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4:8], camera, score, counts)


# ------------------------------------------------------------------------------------------------------- overlaps
def _box2d_overlap(det: np.ndarray, ref: np.ndarray, criterion: str) -> np.ndarray:
    """Pairwise 2D overlap of aligned boxes (l, t, r, b): ``iou`` or ``det`` (intersection / area of ``det``)."""
    iw = np.minimum(det[:, 2], ref[:, 2]) - np.maximum(det[:, 0], ref[:, 0])
    ih = np.minimum(det[:, 3], ref[:, 3]) - np.maximum(det[:, 1], ref[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_det = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    if criterion == "det":
        denom = area_det
    else:
        denom = area_det + (ref[:, 2] - ref[:, 0]) * (ref[:, 3] - ref[:, 1]) - inter
    return np.where((inter > 0) & (denom > 0), inter / np.where(denom > 0, denom, 1.0), 0.0)


def _padded_index(keep: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global indices of the kept boxes of each frame, padded: ``(F, K)`` (``-1`` = pad) and the per-frame counts."""
    frame_of = np.repeat(np.arange(counts.shape[0]), counts)
    kept = np.flatnonzero(keep)
    per_frame = np.bincount(frame_of[kept], minlength=counts.shape[0])
    width = int(per_frame.max()) if per_frame.size else 0
    index = np.full((counts.shape[0], width), -1, dtype=np.int64)
    starts = np.cumsum(per_frame) - per_frame
    slot = np.arange(kept.shape[0]) - np.repeat(starts, per_frame)
    index[frame_of[kept], slot] = kept
    return index, per_frame


def _pairwise_padded(det_idx: np.ndarray, gt_idx: np.ndarray, fn: Any) -> np.ndarray:
    """``(F, D, G)`` values of ``fn(det_global, gt_global)`` for all same-frame pairs of non-pad entries, 0 elsewhere."""
    f_n, d_n, g_n = det_idx.shape[0], det_idx.shape[1], gt_idx.shape[1]
    out = np.zeros((f_n, d_n, g_n))
    if d_n == 0 or g_n == 0:
        return out
    f, d, g = np.nonzero((det_idx[:, :, None] >= 0) & (gt_idx[:, None, :] >= 0))
    if f.size:
        out[f, d, g] = fn(det_idx[f, d], gt_idx[f, g])
    return out


# ------------------------------------------------------------------------------------------------------- matching
def _recall_thresholds(tp_scores: np.ndarray, num_gt: int) -> np.ndarray:
    """Scores at which recall passes 0, 1/40, ..., 1 (OpenPCDet's ``get_thresholds`` rule), highest first."""
    scores = np.sort(tp_scores)[::-1]
    thresholds: list[float] = []
    current = 0.0
    last = len(scores) - 1
    for i, score in enumerate(scores):
        left = (i + 1) / num_gt
        right = (i + 2) / num_gt if i < last else left
        if (right - current) < (current - left) and i < last:
            continue
        thresholds.append(float(score))
        current += 1 / (NUM_SAMPLE_POINTS - 1.0)
    return np.asarray(thresholds[:NUM_SAMPLE_POINTS], dtype=np.float64)


@dataclass
class _Subset:
    """One class and difficulty: relevant boxes only, frames sorted by ground-truth count (descending)."""

    gt_ign: np.ndarray  # (F, G) 0 counted / 1 ignored (pads never visited)
    gt_alpha: np.ndarray  # (F, G)
    gt_counts: np.ndarray  # (F,)
    det_ign: np.ndarray  # (F, D) 0 counted / 1 ignored / -1 pad
    det_score: np.ndarray  # (F, D)
    det_alpha: np.ndarray  # (F, D)
    gt_pos: np.ndarray  # (F, G) column in the padded overlap arrays
    det_pos: np.ndarray  # (F, D)
    frames: np.ndarray  # (F,) row in the padded overlap arrays
    num_valid_gt: int


def _compact(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move kept columns to the front of each row (stable): positions, validity mask and counts."""
    order = np.argsort(~keep, axis=1, kind="stable")
    counts = keep.sum(1)
    width = int(counts.max()) if counts.size else 0
    pos = order[:, :width]
    return pos, np.arange(width)[None, :] < counts[:, None], counts


def _greedy_thresholds(sub: _Subset, ov: np.ndarray, min_overlap: float) -> np.ndarray:
    """Scores of true positives when each ground truth takes the best-scoring free detection (all scores)."""
    f_n, d_n = sub.det_ign.shape
    assigned = np.zeros((f_n, d_n), dtype=bool)
    det_ok = sub.det_ign >= 0
    tp_scores = []
    for g in range(sub.gt_ign.shape[1]):
        n = int((sub.gt_counts > g).sum())  # frames are sorted: those with a g-th ground truth come first
        cand = det_ok[:n] & ~assigned[:n] & (ov[:n, :, g] > min_overlap)
        j = np.where(cand, sub.det_score[:n], -np.inf).argmax(1)
        rows = np.flatnonzero(cand.any(1))
        cols = j[rows]
        assigned[rows, cols] = True
        tp = (sub.gt_ign[rows, g] == 0) & (sub.det_ign[rows, cols] == 0)
        tp_scores.append(sub.det_score[rows[tp], cols[tp]])
    return np.concatenate(tp_scores) if tp_scores else np.zeros(0)


def _statistics(
    sub: _Subset, ov: np.ndarray, min_overlap: float, thresholds: np.ndarray, dc_hit: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """True/false positives, false negatives and orientation similarity summed over frames, per threshold ``(T,)``."""
    t_n = thresholds.shape[0]
    eligible = (sub.det_ign >= 0)[:, None, :] & (sub.det_score[:, None, :] >= thresholds[None, :, None])  # (F, T, D)
    assigned = np.zeros_like(eligible)
    tp, fn, similarity = np.zeros(t_n, np.int64), np.zeros(t_n, np.int64), np.zeros(t_n)
    counted_det, ignored_det = (sub.det_ign == 0)[:, None, :], (sub.det_ign == 1)[:, None, :]
    for g in range(sub.gt_ign.shape[1]):
        n = int((sub.gt_counts > g).sum())
        cand = eligible[:n] & ~assigned[:n] & (ov[:n, None, :, g] > min_overlap)  # (n, T, D)
        cand_counted = cand & counted_det[:n]
        cand_ignored = cand & ignored_det[:n]
        has_counted, has_ignored = cand_counted.any(-1), cand_ignored.any(-1)
        j_counted = np.where(cand_counted, ov[:n, None, :, g], -1.0).argmax(-1)  # largest IoU, first on ties
        j = np.where(has_counted, j_counted, cand_ignored.argmax(-1))  # else the first ignored candidate
        has = has_counted | has_ignored
        rows, t_idx = np.nonzero(has)
        assigned[rows, t_idx, j[rows, t_idx]] = True
        counted_gt = (sub.gt_ign[:n, g] == 0)[:, None]
        fn += (~has & counted_gt).sum(0)
        is_tp = has_counted & counted_gt
        tp += is_tp.sum(0)
        if is_tp.any():
            rows, t_idx = np.nonzero(is_tp)
            delta = sub.gt_alpha[rows, g] - sub.det_alpha[rows, j[rows, t_idx]]
            np.add.at(similarity, t_idx, (1.0 + np.cos(delta)) / 2.0)
    free = eligible & ~assigned & counted_det
    fp = free.sum((0, 2))
    if dc_hit is not None:
        fp = fp - (free & dc_hit[:, None, :]).sum((0, 2))
    return tp, fp, fn, similarity


def _average_precision(tp: np.ndarray, fp: np.ndarray, similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotone precision and AOS curves at the 41 sample points (zeros past the last threshold)."""
    precision, aos = np.zeros(NUM_SAMPLE_POINTS), np.zeros(NUM_SAMPLE_POINTS)
    denom = (tp + fp).astype(np.float64)
    safe = np.where(denom > 0, denom, 1.0)
    k = tp.shape[0]
    precision[:k] = np.where(denom > 0, tp / safe, 0.0)
    aos[:k] = np.where(denom > 0, similarity / safe, 0.0)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    aos = np.maximum.accumulate(aos[::-1])[::-1]
    return precision, aos


def _ap_r40(curve: np.ndarray) -> float:
    return float(curve[1:].sum() / 40.0 * 100.0)


def _ap_r11(curve: np.ndarray) -> float:
    return float(curve[::4].sum() / 11.0 * 100.0)


# ------------------------------------------------------------------------------------------------------ evaluation
def _evaluate(
    gt: _Boxes,
    dt: _Boxes,
    classes: Sequence[str],
    vocab: Mapping[str, int],
    ignore_classes: Mapping[str, Sequence[str]],
    overlap_sets: Mapping[str, Sequence[Sequence[float]]],
    compute_aos: bool,
) -> dict[str, Tensor]:
    class_codes = {vocab[c] for c in classes}
    ignore_codes = {vocab[n] for c in classes for n in ignore_classes.get(c, ())}
    dontcare = vocab["dontcare"]
    gt_height = gt.bbox[:, 3] - gt.bbox[:, 1]
    dt_height = np.abs(dt.bbox[:, 3] - dt.bbox[:, 1])

    # Boxes that can matter for some class/difficulty; overlaps are computed once for these.
    gt_idx, _ = _padded_index(np.isin(gt.code, list(class_codes | ignore_codes)), gt.counts)
    dt_idx, _ = _padded_index(np.isin(dt.code, list(class_codes)) | (dt_height < max(MIN_HEIGHT)), dt.counts)
    dc_idx, _ = _padded_index(gt.code == dontcare, gt.counts)
    overlaps = {
        "bbox": _pairwise_padded(dt_idx, gt_idx, lambda d, g: _box2d_overlap(dt.bbox[d], gt.bbox[g], "iou")),
        "bev": _pairwise_padded(dt_idx, gt_idx, lambda d, g: _camera_iou(camera_boxes_bev_iou, dt, gt, d, g)),
        "3d": _pairwise_padded(dt_idx, gt_idx, lambda d, g: _camera_iou(camera_boxes_iou_3d, dt, gt, d, g)),
    }
    dc_cover = _pairwise_padded(dt_idx, dc_idx, lambda d, g: _box2d_overlap(dt.bbox[d], gt.bbox[g], "det"))
    dc_cover = dc_cover.max(2) if dc_cover.shape[2] else np.zeros(dt_idx.shape)

    results: dict[str, Tensor] = {}
    for ci, name in enumerate(classes):
        code, neighbours = vocab[name], {vocab[n] for n in ignore_classes.get(name, ())}
        for di, difficulty in enumerate(DIFFICULTIES):
            sub = _subset(gt, dt, gt_idx, dt_idx, gt_height, dt_height, code, neighbours, di)
            for set_name, table in overlap_sets.items():
                suffix = "" if set_name == "strict" else f"_{set_name}"
                for mi, metric in enumerate(METRICS):
                    min_overlap = float(table[ci][mi])
                    ov = overlaps[metric][sub.frames[:, None, None], sub.det_pos[:, :, None], sub.gt_pos[:, None, :]]
                    precision, aos = np.zeros(NUM_SAMPLE_POINTS), np.zeros(NUM_SAMPLE_POINTS)
                    if sub.num_valid_gt > 0 and ov.size:
                        thresholds = _recall_thresholds(_greedy_thresholds(sub, ov, min_overlap), sub.num_valid_gt)
                        if thresholds.size:
                            dc_hit = None
                            if metric == "bbox":
                                dc_hit = dc_cover[sub.frames[:, None], sub.det_pos] > min_overlap
                            tp, fp, _, similarity = _statistics(sub, ov, min_overlap, thresholds, dc_hit)
                            precision, aos = _average_precision(tp, fp, similarity)
                    prefix = _METRIC_PREFIX[metric]
                    results[f"{prefix}_{name}_{difficulty}_r40{suffix}"] = precision
                    if metric == "bbox" and compute_aos:
                        results[f"aos_{name}_{difficulty}_r40{suffix}"] = aos
    out: dict[str, Tensor] = {}
    for key, curve in results.items():
        out[key] = torch.tensor(_ap_r40(curve), dtype=torch.float64)
        out[key.replace("_r40", "_r11")] = torch.tensor(_ap_r11(curve), dtype=torch.float64)
    _add_means(out, classes, overlap_sets, compute_aos)
    return {k: v.to(torch.get_default_dtype()) for k, v in sorted(out.items())}


def _add_means(out: dict[str, Tensor], classes: Sequence[str], sets: Mapping[str, Any], compute_aos: bool) -> None:
    prefixes = list(_METRIC_PREFIX.values()) + (["aos"] if compute_aos else [])
    for set_name in sets:
        suffix = "" if set_name == "strict" else f"_{set_name}"
        for prefix in prefixes:
            for difficulty in DIFFICULTIES:
                for rec in ("r40", "r11"):
                    values = [out[f"{prefix}_{c}_{difficulty}_{rec}{suffix}"] for c in classes]
                    out[f"{prefix}_{difficulty}_{rec}{suffix}"] = torch.stack(values).mean()


def _camera_iou(fn: Any, dt: _Boxes, gt: _Boxes, d: np.ndarray, g: np.ndarray) -> np.ndarray:
    return fn(torch.from_numpy(dt.camera[d]), torch.from_numpy(gt.camera[g]), aligned=True).numpy()


def _subset(
    gt: _Boxes,
    dt: _Boxes,
    gt_idx: np.ndarray,
    dt_idx: np.ndarray,
    gt_height: np.ndarray,
    dt_height: np.ndarray,
    code: int,
    neighbours: set[int],
    difficulty: int,
) -> _Subset:
    """Ignore flags of one class/difficulty on the padded boxes, compacted to the relevant ones."""
    g_safe, d_safe = np.maximum(gt_idx, 0), np.maximum(dt_idx, 0)
    hard_to_see = (
        (gt.occluded[g_safe] > MAX_OCCLUSION[difficulty])
        | (gt.truncated[g_safe] > MAX_TRUNCATION[difficulty])
        | (gt_height[g_safe] <= MIN_HEIGHT[difficulty])
    )
    same = gt.code[g_safe] == code
    gt_ign = np.where(same & ~hard_to_see, 0, np.where(np.isin(gt.code[g_safe], list(neighbours)) | same, 1, -1))
    gt_ign = np.where(gt_idx >= 0, gt_ign, -1)
    small = dt_height[d_safe] < MIN_HEIGHT[difficulty]
    det_ign = np.where(small, 1, np.where(dt.code[d_safe] == code, 0, -1))
    det_ign = np.where(dt_idx >= 0, det_ign, -1)

    gt_pos, gt_valid, gt_counts = _compact(gt_ign >= 0)
    det_pos, det_valid, _ = _compact(det_ign >= 0)
    frames = np.argsort(-gt_counts, kind="stable")
    gt_pos, gt_valid, gt_counts = gt_pos[frames], gt_valid[frames], gt_counts[frames]
    det_pos, det_valid = det_pos[frames], det_valid[frames]
    rows_g, rows_d = frames[:, None], frames[:, None]
    gt_ign_c = np.where(gt_valid, gt_ign[rows_g, gt_pos], -1)
    det_ign_c = np.where(det_valid, det_ign[rows_d, det_pos], -1)
    gt_alpha = gt.alpha[g_safe][rows_g, gt_pos]
    det_score = np.where(det_valid, dt.score[d_safe][rows_d, det_pos], -np.inf)
    det_alpha = dt.alpha[d_safe][rows_d, det_pos]
    return _Subset(
        gt_ign_c,
        gt_alpha,
        gt_counts,
        det_ign_c,
        det_score,
        det_alpha,
        gt_pos,
        det_pos,
        frames,
        int((gt_ign == 0).sum()),
    )


# ----------------------------------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class _Config:
    classes: tuple[str, ...]
    vocab: dict[str, int]
    ignore_classes: dict[str, tuple[str, ...]]
    overlap_sets: dict[str, tuple[tuple[float, float, float], ...]]
    compute_aos: bool


def _resolve_config(
    classes: Sequence[str],
    include_loose: bool,
    min_overlaps: Mapping[str, Sequence[float]] | None,
    ignore_classes: Mapping[str, Sequence[str]] | None,
    compute_aos: bool,
) -> _Config:
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ValueError(f"`classes` must be a non-empty sequence of class names, got {classes!r}")
    names = tuple(str(c).lower() for c in classes)
    if len(set(names)) != len(names):
        raise ValueError(f"`classes` has duplicates (case-insensitive): {list(classes)}")
    custom = {str(k).lower(): tuple(float(x) for x in v) for k, v in (min_overlaps or {}).items()}
    for key, value in custom.items():
        if len(value) != 3 or not all(0.0 <= x < 1.0 for x in value):
            raise ValueError(
                f"`min_overlaps[{key!r}]` must be three IoU thresholds (bbox, bev, 3d) in [0, 1), got {value}"
            )
    strict, loose = [], []
    for name in names:
        if name in custom:
            strict.append(custom[name])
        elif name in KITTI_MIN_OVERLAPS:
            strict.append(KITTI_MIN_OVERLAPS[name]["strict"])
        else:
            raise ValueError(
                f"no default IoU thresholds for class {name!r}; pass `min_overlaps={{{name!r}: (bbox, bev, 3d)}}` "
                f"(defaults exist for {sorted(KITTI_MIN_OVERLAPS)})"
            )
        if include_loose:
            if name not in KITTI_MIN_OVERLAPS:
                raise ValueError(f"no loose IoU thresholds for class {name!r}; known: {sorted(KITTI_MIN_OVERLAPS)}")
            loose.append(KITTI_MIN_OVERLAPS[name]["loose"])
    source = DEFAULT_IGNORE_CLASSES if ignore_classes is None else ignore_classes
    ignore = {
        str(k).lower(): tuple(str(n).lower() for n in ([v] if isinstance(v, str) else v)) for k, v in source.items()
    }
    vocab: dict[str, int] = {}
    for name in (*KITTI_TYPES, *names, *(n for v in ignore.values() for n in v)):
        vocab.setdefault(name, len(vocab))
    sets = {"strict": tuple(strict)} | ({"loose": tuple(loose)} if include_loose else {})
    return _Config(names, vocab, ignore, sets, bool(compute_aos))


def _pack_frames(
    predictions: Sequence[Mapping[str, Any]], ground_truth: Sequence[Mapping[str, Any]], vocab: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    for arg, value in (("predictions", predictions), ("ground_truth", ground_truth)):
        if isinstance(value, Mapping) or not isinstance(value, Sequence):
            raise KITTIEvalInputError(f"`{arg}` must be a list with one dict per frame, got {type(value).__name__}")
    if len(predictions) != len(ground_truth):
        raise KITTIEvalInputError(
            f"`predictions` and `ground_truth` must hold the same frames, got {len(predictions)} and {len(ground_truth)}"
        )
    dt = [_pack_frame(p, vocab, True, f"predictions[{i}]") for i, p in enumerate(predictions)]
    gt = [_pack_frame(g, vocab, False, f"ground_truth[{i}]") for i, g in enumerate(ground_truth)]
    dt_rows = np.concatenate(dt, 0) if dt else np.zeros((0, _DT_COLS))
    gt_rows = np.concatenate(gt, 0) if gt else np.zeros((0, _GT_COLS))
    dt_counts = np.array([r.shape[0] for r in dt], dtype=np.int64)
    gt_counts = np.array([r.shape[0] for r in gt], dtype=np.int64)
    return dt_rows, dt_counts, gt_rows, gt_counts


def _compute(
    dt_rows: np.ndarray, dt_counts: np.ndarray, gt_rows: np.ndarray, gt_counts: np.ndarray, cfg: _Config
) -> dict[str, Tensor]:
    if dt_counts.shape != gt_counts.shape:
        raise RuntimeError(
            f"frame counts differ: {dt_counts.shape[0]} prediction frames, {gt_counts.shape[0]} gt frames"
        )
    if dt_counts.sum() != dt_rows.shape[0] or gt_counts.sum() != gt_rows.shape[0]:
        raise RuntimeError("KITTIDetectionAP states are inconsistent: per-frame counts do not add up to the rows")
    dt, gt = _Boxes.from_rows(dt_rows, dt_counts), _Boxes.from_rows(gt_rows, gt_counts)
    return _evaluate(gt, dt, cfg.classes, cfg.vocab, cfg.ignore_classes, cfg.overlap_sets, cfg.compute_aos)


def kitti_detection_ap(
    predictions: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[Mapping[str, Any]],
    classes: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
    include_loose: bool = False,
    min_overlaps: Mapping[str, Sequence[float]] | None = None,
    ignore_classes: Mapping[str, Sequence[str]] | None = None,
    compute_aos: bool = True,
) -> dict[str, Tensor]:
    """KITTI object detection AP of a whole evaluation set; the functional twin of :class:`KITTIDetectionAP`.

    Args and returns: see :class:`KITTIDetectionAP` (``predictions``/``ground_truth`` as for ``update``).
    """
    cfg = _resolve_config(classes, include_loose, min_overlaps, ignore_classes, compute_aos)
    return _compute(*_pack_frames(predictions, ground_truth, cfg.vocab), cfg)


class KITTIDetectionAP(Metric):
    """Official KITTI object evaluation (2D / BEV / 3D AP with 11 and 40 recall points, and AOS).

    Each frame is a dict of arrays (numpy or tensors) in the KITTI ``label_2`` convention, ``M`` objects:

    - ``name`` ``(M,)`` str: ``Car``, ``Van``, ``Pedestrian``, ``Person_sitting``, ``Cyclist``, ``DontCare`` ...
    - ``truncated`` ``(M,)`` float in [0, 1], ``occluded`` ``(M,)`` int 0..3 (ground truth only)
    - ``alpha`` ``(M,)`` observation angle, ``bbox`` ``(M, 4)`` left, top, right, bottom in pixels
    - ``dimensions`` ``(M, 3)`` **h, w, l** in metres (label-file order; OpenPCDet's annos store ``l, h, w``:
      pass ``dims[:, [1, 2, 0]]``), ``location`` ``(M, 3)`` bottom centre in the rectified camera frame,
      ``rotation_y`` ``(M,)``
    - predictions also ``score`` ``(M,)``; their ``truncated``/``occluded`` are optional and unused.

    :meth:`compute` returns percentages (0-100) under keys ``{ap2d,apbev,ap3d,aos}_{class}_{easy,mod,hard}_{r40,r11}``
    (class lower-case, e.g. ``ap3d_car_mod_r40``, ``aos_car_mod_r40``), their means over classes
    ``{ap2d,apbev,ap3d,aos}_{easy,mod,hard}_{r40,r11}`` (e.g. ``ap3d_mod_r40``) and, with ``include_loose``, the same
    keys ending in ``_loose``. The rules and the deviations from OpenPCDet are in the module docstring.

    States are per-frame rows in list states reduced with ``cat`` plus per-frame row counts (also ``cat``): under DDP
    every rank contributes its frames in the same order to both, so frames are recovered after the gather and the
    result is the AP over the union of all ranks' frames.

    Args:
        classes: Classes to evaluate (case-insensitive).
        include_loose: Also report the loose IoU set (Car 0.7/0.5/0.5, Pedestrian and Cyclist 0.5/0.25/0.25).
        min_overlaps: Per class ``(bbox, bev, 3d)`` IoU thresholds replacing the strict defaults.
        ignore_classes: Class -> neighbour classes whose boxes are ignored rather than missed (default Van for Car,
            Person_sitting for Pedestrian).
        compute_aos: Also report AOS (needs meaningful predicted ``alpha``).
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import numpy as np
        >>> gt = {"name": np.array(["Car"]), "truncated": np.zeros(1), "occluded": np.zeros(1), "alpha": np.zeros(1),
        ...       "bbox": np.array([[100.0, 100.0, 200.0, 180.0]]), "dimensions": np.array([[1.5, 1.6, 3.9]]),
        ...       "location": np.array([[2.0, 1.7, 20.0]]), "rotation_y": np.zeros(1)}
        >>> metric = KITTIDetectionAP(classes=["Car"])
        >>> metric.update([dict(gt, score=np.ones(1))] * 41, [gt] * 41)  # 41 frames: see "sparse sampling"
        >>> float(metric.compute()["ap3d_car_mod_r40"])
        100.0
        >>> metric.reset()
        >>> metric.update([dict(gt, score=np.ones(1))] * 2, [gt] * 2)  # 2 cars: 2 of the 41 sample points
        >>> float(metric.compute()["ap3d_car_mod_r40"])
        2.5
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        classes: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
        include_loose: bool = False,
        min_overlaps: Mapping[str, Sequence[float]] | None = None,
        ignore_classes: Mapping[str, Sequence[str]] | None = None,
        compute_aos: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._cfg = _resolve_config(classes, include_loose, min_overlaps, ignore_classes, compute_aos)
        self.add_state("pred_rows", default=[], dist_reduce_fx="cat")
        self.add_state("pred_counts", default=[], dist_reduce_fx="cat")
        self.add_state("gt_rows", default=[], dist_reduce_fx="cat")
        self.add_state("gt_counts", default=[], dist_reduce_fx="cat")

    def update(self, predictions: Sequence[Mapping[str, Any]], ground_truth: Sequence[Mapping[str, Any]]) -> None:
        """Add frames: ``predictions[i]`` and ``ground_truth[i]`` describe the same image."""
        dt_rows, dt_counts, gt_rows, gt_counts = _pack_frames(predictions, ground_truth, self._cfg.vocab)
        self.pred_rows.append(torch.from_numpy(dt_rows).to(self.device))
        self.pred_counts.append(torch.from_numpy(dt_counts).to(self.device))
        self.gt_rows.append(torch.from_numpy(gt_rows).to(self.device))
        self.gt_counts.append(torch.from_numpy(gt_counts).to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """AP/AOS in percent over all frames seen (see the class docstring for the keys)."""

        def cat(state: Any, width: int, dtype: torch.dtype) -> np.ndarray:
            if isinstance(state, list) and not state:
                return np.zeros((0, width) if width else (0,), dtype=np.float64 if width else np.int64)
            return dim_zero_cat(state).to(dtype).cpu().numpy()

        results = _compute(
            cat(self.pred_rows, _DT_COLS, torch.float64).reshape(-1, _DT_COLS),
            cat(self.pred_counts, 0, torch.int64).reshape(-1),
            cat(self.gt_rows, _GT_COLS, torch.float64).reshape(-1, _GT_COLS),
            cat(self.gt_counts, 0, torch.int64).reshape(-1),
            self._cfg,
        )
        return {k: v.to(self.device) for k, v in results.items()}
