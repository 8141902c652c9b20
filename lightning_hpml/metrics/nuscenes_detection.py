r"""nuScenes detection metric: mAP, NDS and the true-positive errors, computed by the nuscenes-devkit.

References:
    - H. Caesar et al., "nuScenes: A multimodal dataset for autonomous driving", CVPR 2020 (mAP by bird's-eye
      centre distance, TP metrics, NDS).
    - The official nuscenes-devkit, ``nuscenes/eval/detection/evaluate.py`` (``DetectionEval``), with the
      ``detection_cvpr_2019`` configuration: class ranges 50 m (car, truck, bus, trailer, construction vehicle),
      40 m (pedestrian, motorcycle, bicycle), 30 m (barrier, traffic cone); matching thresholds 0.5/1/2/4 m; TP errors
      at 2 m; min recall = min precision = 0.1; at most 500 boxes per sample;
      ``NDS = (5 mAP + sum_{5 TP} max(0, 1 - mTP)) / 10``.

What this class adds around the devkit: it collects per-sample predictions in the keyframe LiDAR frame (as a
LiDAR DataModule yields boxes), converts them to the global frame with the sample's LIDAR_TOP ``calibrated_sensor``
and ``ego_pose`` (box centre, ``size`` as w, l, h, rotation ``q_ego * q_sensor * q_z(yaw)``, velocity rotated),
writes the standard results JSON (``meta.use_lidar = True``) and runs ``DetectionEval.evaluate``. The evaluated
samples are either the updated ones (default; the devkit needs a split name, so a thin ``DetectionEval`` subclass
loads the ground truth of exactly those sample tokens with the devkit's ``load_gt_of_sample_tokens`` and the
predictions with its ``load_prediction``, then applies the devkit's own ``add_center_dist`` and
``filter_eval_boxes``), or all samples of ``eval_split`` (a predefined split or one from ``<root>/<version>/
splits.json``; samples without predictions count as missed). Ground truth and matching are the devkit's.

Choices (documented deviations): predictions without velocity get ``(0, 0)``; without attribute, the class's
default (:data:`~lightning_hpml.datamodules.formats.nuscenes.DETECTION_DEFAULT_ATTRIBUTE`); more than 500 boxes per
sample keep the 500 best scores (the devkit rejects the file otherwise); with ``classes`` other than the 10 detection
classes, ground truth and predictions of other classes are dropped and mAP / NDS / mTP average over ``classes`` only
(the official protocol uses all 10). Samples that several processes evaluated (DDP padding) count once.

States (lists gathered across processes): sample tokens as ASCII codes, per-sample box counts, boxes, scores,
labels, velocities, attribute indices. ``compute`` needs the nuScenes tables: pass ``nusc`` (a loaded ``NuScenes``)
or ``dataroot`` and ``version`` (loaded on the first ``compute``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_hpml.datamodules.formats.nuscenes import (
    DETECTION_CLASSES,
    DETECTION_DEFAULT_ATTRIBUTE,
    NUSCENES_ATTRIBUTES,
    lidar_boxes_to_global,
    load_nuscenes,
    pose_matrix,
    scenes_of_split,
)

__all__ = ["NUSCENES_METRIC_NAMES", "NuScenesDetectionMetric"]

_TOKEN_BYTES = 64
_ATTRIBUTES = tuple(NUSCENES_ATTRIBUTES)
_TP_NAMES = {"trans_err": "mate", "scale_err": "mase", "orient_err": "maoe", "vel_err": "mave", "attr_err": "maae"}
NUSCENES_METRIC_NAMES = ("map", "nds", *_TP_NAMES.values())
"""Summary keys of :meth:`NuScenesDetectionMetric.compute`; per-class APs are ``ap_<class>``."""


def _encode_tokens(tokens: Sequence[str]) -> Tensor:
    codes = torch.zeros((len(tokens), _TOKEN_BYTES), dtype=torch.uint8)
    for i, token in enumerate(tokens):
        raw = str(token).encode("ascii", errors="strict") if str(token).isascii() else b""
        if not raw or len(raw) > _TOKEN_BYTES:
            raise ValueError(f"sample tokens must be 1..{_TOKEN_BYTES} ASCII characters, got {token!r}")
        codes[i, : len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return codes


def _decode_tokens(codes: Tensor) -> list[str]:
    return [bytes(row[row > 0].tolist()).decode("ascii") for row in codes.cpu()]


class NuScenesDetectionMetric(Metric):
    """nuScenes detection evaluation (mAP, NDS, mATE/mASE/mAOE/mAVE/mAAE, per-class AP) via the devkit.

    Args:
        dataroot: nuScenes root (holding ``<version>/``); not needed when ``nusc`` is given.
        version: Table folder, e.g. ``v1.0-mini`` or ``v1.0-trainval``.
        classes: Detection classes that ``labels`` index (1-based), default the 10 in OpenPCDet's order.
        eval_split: ``None``: evaluate the updated samples; a split name: evaluate all its samples.
        config: Devkit detection configuration name.
        nusc: An already loaded devkit ``NuScenes`` (shared with the DataModule; avoids loading the tables twice).
        output_dir: Keep the results JSON and the devkit's ``metrics_summary.json`` there (default: a temporary
            folder, deleted after ``compute``).
        verbose: Let the devkit print its progress.
        kwargs: :class:`torchmetrics.Metric` options.

    Example:
        >>> metric = datamodule.detection_metric()          # doctest: +SKIP
        >>> metric.update(batch["sample_token"], pred_boxes, pred_scores, pred_labels)  # doctest: +SKIP
        >>> metric.compute()["nds"]                          # doctest: +SKIP
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        dataroot: str | os.PathLike[str] | None = None,
        version: str = "v1.0-mini",
        classes: Sequence[str] = DETECTION_CLASSES,
        eval_split: str | None = None,
        config: str = "detection_cvpr_2019",
        nusc: Any = None,
        output_dir: str | os.PathLike[str] | None = None,
        verbose: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        classes = tuple(classes)
        unknown = [c for c in classes if c not in DETECTION_CLASSES]
        if not classes or unknown or len(set(classes)) != len(classes):
            raise ValueError(
                f"`classes` must be distinct nuScenes detection classes {list(DETECTION_CLASSES)}, got {classes!r}"
            )
        if nusc is None and dataroot is None:
            raise ValueError("pass `dataroot` (and `version`) or a loaded `nusc` so that compute() finds the tables")
        self.dataroot = None if dataroot is None else str(dataroot)
        self.version = version
        self.classes = classes
        self.eval_split = eval_split
        self.config = config
        self.output_dir = None if output_dir is None else str(output_dir)
        self.verbose = verbose
        self._nusc = nusc
        self.last_summary: dict[str, Any] | None = None
        for name in ("tokens", "counts", "boxes", "scores", "labels", "velocities", "attributes"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    @property
    def nusc(self) -> Any:
        """The devkit ``NuScenes`` object (loaded from ``dataroot`` / ``version`` on first use)."""
        if self._nusc is None:
            self._nusc = load_nuscenes(self.dataroot, self.version)
        return self._nusc

    def update(
        self,
        sample_tokens: Sequence[str],
        boxes: Sequence[Tensor],
        scores: Sequence[Tensor],
        labels: Sequence[Tensor],
        velocities: Sequence[Tensor] | None = None,
        attributes: Sequence[Sequence[str]] | None = None,
        rotation: Tensor | None = None,
    ) -> None:
        """Add the predictions of a batch (one entry per sample).

        Args:
            sample_tokens: ``B`` sample tokens (the batch's ``sample_token``).
            boxes: ``B`` tensors ``(K_i, 7)`` x, y, z_centre, l, w, h, yaw in the keyframe LiDAR frame.
            scores: ``B`` tensors ``(K_i,)``.
            labels: ``B`` int tensors ``(K_i,)``, 1-based indices into ``classes``.
            velocities: Optional ``B`` tensors ``(K_i, 2)`` vx, vy in the LiDAR frame (m/s); default 0.
            attributes: Optional ``B`` lists of ``K_i`` attribute names (``""``: the class default).
            rotation: Optional ``(B,)`` test-rotation angles of the batch: boxes and velocities are rotated back by
                ``-rotation`` about z first.

        Raises:
            ValueError: Mismatched lengths or shapes, labels outside ``1..len(classes)``, unknown attributes.
        """
        batch = len(sample_tokens)
        for name, value in (("boxes", boxes), ("scores", scores), ("labels", labels)):
            if len(value) != batch:
                raise ValueError(f"`{name}` has {len(value)} entries for {batch} sample tokens")
        for name, value in (("velocities", velocities), ("attributes", attributes)):
            if value is not None and len(value) != batch:
                raise ValueError(f"`{name}` has {len(value)} entries for {batch} sample tokens")
        if rotation is not None and torch.as_tensor(rotation).numel() != batch:
            raise ValueError(f"`rotation` must hold {batch} angles, got shape {tuple(torch.as_tensor(rotation).shape)}")
        counts = []
        for i in range(batch):
            box = torch.as_tensor(boxes[i]).detach().to(self.device, torch.float64).reshape(-1, 7)
            count = box.shape[0]
            score = torch.as_tensor(scores[i]).detach().to(self.device, torch.float64).reshape(-1)
            label = torch.as_tensor(labels[i]).detach().to(self.device, torch.int64).reshape(-1)
            if score.numel() != count or label.numel() != count:
                raise ValueError(
                    f"sample {sample_tokens[i]!r}: {count} boxes but {score.numel()} scores and {label.numel()} labels"
                )
            if count and (int(label.min()) < 1 or int(label.max()) > len(self.classes)):
                raise ValueError(
                    f"sample {sample_tokens[i]!r}: labels must be 1-based indices into classes "
                    f"({len(self.classes)} classes), got values in [{int(label.min())}, {int(label.max())}]"
                )
            if velocities is not None:
                velocity = torch.as_tensor(velocities[i]).detach().to(self.device, torch.float64).reshape(-1, 2)
                if velocity.shape[0] != count:
                    raise ValueError(f"sample {sample_tokens[i]!r}: {count} boxes but {velocity.shape[0]} velocities")
                velocity = torch.nan_to_num(velocity, nan=0.0)
            else:
                velocity = box.new_zeros((count, 2))
            attribute = torch.full((count,), -1, dtype=torch.int64, device=self.device)
            if attributes is not None:
                names = list(attributes[i])
                if len(names) != count:
                    raise ValueError(f"sample {sample_tokens[i]!r}: {count} boxes but {len(names)} attributes")
                bad = [n for n in names if n and n not in _ATTRIBUTES]
                if bad:
                    raise ValueError(f"unknown attributes {bad}; known: {list(_ATTRIBUTES)}")
                attribute = torch.tensor([_ATTRIBUTES.index(n) if n else -1 for n in names], dtype=torch.int64)
                attribute = attribute.to(self.device)
            if rotation is not None:
                angle = -float(torch.as_tensor(rotation).reshape(-1)[i])
                cos, sin = math.cos(angle), math.sin(angle)
                turn = box.new_tensor([[cos, sin], [-sin, cos]])
                box = torch.cat([box[:, :2] @ turn, box[:, 2:6], box[:, 6:] + angle], dim=1)
                velocity = velocity @ turn
            self.boxes.append(box)
            self.scores.append(score)
            self.labels.append(label)
            self.velocities.append(velocity)
            self.attributes.append(attribute)
            counts.append(count)
        self.tokens.append(_encode_tokens(sample_tokens).to(self.device))
        self.counts.append(torch.tensor(counts, dtype=torch.int64, device=self.device))

    def _predictions(self) -> dict[str, dict[str, np.ndarray]]:
        if len(self.tokens) == 0:
            return {}
        tokens = _decode_tokens(dim_zero_cat(self.tokens))
        counts = dim_zero_cat(self.counts).cpu().numpy()
        columns = {
            name: dim_zero_cat(getattr(self, name)).cpu().numpy()
            for name in ("boxes", "scores", "labels", "velocities", "attributes")
        }
        offsets = np.concatenate([[0], np.cumsum(counts)])
        out: dict[str, dict[str, np.ndarray]] = {}
        for i, token in enumerate(tokens):
            if token in out:  # the same sample from another process (DistributedSampler padding)
                continue
            out[token] = {name: value[offsets[i] : offsets[i + 1]] for name, value in columns.items()}
        return out

    def results_json(self, predictions: dict[str, dict[str, np.ndarray]], max_boxes: int = 500) -> dict[str, Any]:
        """The nuScenes results dict (``meta`` and ``results`` per sample token) of collected predictions."""
        nusc = self.nusc
        results: dict[str, list[dict[str, Any]]] = {}
        for token, pred in predictions.items():
            sample = nusc.get("sample", token)
            sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            lidar_to_global = pose_matrix(**_pose(nusc.get("ego_pose", sd["ego_pose_token"]))) @ pose_matrix(
                **_pose(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))
            )
            order = np.argsort(-pred["scores"], kind="stable")[:max_boxes]
            translation, size, rotation = lidar_boxes_to_global(pred["boxes"][order], lidar_to_global)
            velocity = np.concatenate([pred["velocities"][order], np.zeros((len(order), 1))], axis=1)
            velocity = velocity @ lidar_to_global[:3, :3].T
            entries = []
            for j, k in enumerate(order):
                name = self.classes[int(pred["labels"][k]) - 1]
                attribute = int(pred["attributes"][k])
                entries.append(
                    {
                        "sample_token": token,
                        "translation": translation[j].tolist(),
                        "size": np.maximum(size[j], 1e-3).tolist(),
                        "rotation": rotation[j].tolist(),
                        "velocity": velocity[j, :2].tolist(),
                        "detection_name": name,
                        "detection_score": float(pred["scores"][k]),
                        "attribute_name": _ATTRIBUTES[attribute]
                        if attribute >= 0
                        else DETECTION_DEFAULT_ATTRIBUTE[name],
                    }
                )
            results[token] = entries
        meta = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}
        return {"meta": meta, "results": results}

    def _sample_tokens(self, predicted: list[str]) -> list[str]:
        if self.eval_split is None:
            return predicted
        scenes = set(scenes_of_split(self.nusc, self.eval_split))
        tokens = [s["token"] for s in self.nusc.sample if self.nusc.get("scene", s["scene_token"])["name"] in scenes]
        outside = sorted(set(predicted) - set(tokens))
        if outside:
            raise ValueError(
                f"{len(outside)} updated samples are not in eval_split {self.eval_split!r} (e.g. {outside[0]!r})"
            )
        return tokens

    def compute(self) -> dict[str, Tensor]:
        """Run the devkit evaluation; returns ``map``, ``nds``, ``mate``, ``mase``, ``maoe``, ``mave``, ``maae`` and
        ``ap_<class>`` (fractions, float64 scalars). The devkit's full summary is kept in ``last_summary``.

        Raises:
            RuntimeError: Nothing was updated.
        """
        from nuscenes.eval.common.config import config_factory

        predictions = self._predictions()
        if not predictions and self.eval_split is None:
            raise RuntimeError("NuScenesDetectionMetric.compute() before any update(): no samples to evaluate")
        sample_tokens = self._sample_tokens(list(predictions))
        empty = {k: np.zeros((0,) + v.shape[1:], v.dtype) for k, v in next(iter(predictions.values()), {}).items()}
        empty = empty or {
            "boxes": np.zeros((0, 7)),
            "scores": np.zeros(0),
            "labels": np.zeros(0, np.int64),
            "velocities": np.zeros((0, 2)),
            "attributes": np.zeros(0, np.int64),
        }
        predictions = {token: predictions.get(token, empty) for token in sample_tokens}
        cfg = config_factory(self.config)
        document = self.results_json(predictions, max_boxes=cfg.max_boxes_per_sample)

        with tempfile.TemporaryDirectory(prefix="nuscenes_eval_") as tmp:
            out_dir = self.output_dir or tmp
            os.makedirs(out_dir, exist_ok=True)
            result_path = os.path.join(out_dir, "results_nusc.json")
            with open(result_path, "w", encoding="utf-8") as f:
                json.dump(document, f)
            quiet = contextlib.ExitStack()
            if not self.verbose:  # the devkit draws tqdm bars even when not verbose
                quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
            with quiet:
                evaluator = _SampleTokenDetectionEval(
                    self.nusc, cfg, result_path, sample_tokens, self.classes, out_dir, verbose=self.verbose
                )
                metrics, _ = evaluator.evaluate()
            summary = metrics.serialize()
            if self.output_dir is not None:
                with open(os.path.join(out_dir, "metrics_summary.json"), "w", encoding="utf-8") as f:
                    json.dump(summary, f, indent=2, default=float)
        self.last_summary = summary
        values = {"map": metrics.mean_ap, "nds": metrics.nd_score}
        values.update({key: metrics.tp_errors[name] for name, key in _TP_NAMES.items()})
        values.update({f"ap_{name}": metrics.mean_dist_aps[name] for name in self.classes})
        return {key: torch.tensor(float(value), dtype=torch.float64) for key, value in values.items()}


def _pose(record: dict) -> dict[str, Any]:
    return {"translation": record["translation"], "rotation": record["rotation"]}


def _evaluator_class():
    from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, load_prediction

    try:
        from nuscenes.eval.common.loaders import load_gt_of_sample_tokens
    except ImportError as err:  # pragma: no cover - depends on the installed devkit
        raise ModuleNotFoundError(
            "NuScenesDetectionMetric needs nuscenes-devkit >= 1.2 (load_gt_of_sample_tokens)"
        ) from err
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.eval.detection.evaluate import DetectionEval

    class SampleTokenDetectionEval(DetectionEval):
        """``DetectionEval`` over an explicit list of sample tokens instead of a split name.

        Same steps as the devkit's constructor (load predictions and ground truth, centre distances, the devkit's
        box filtering by class range, points and bike racks); ``evaluate`` is inherited unchanged. With a subset of
        the detection classes, boxes of the other classes are dropped and the configuration averages over the
        subset.
        """

        def __init__(self, nusc, config, result_path, sample_tokens, classes, output_dir, verbose=False):
            self.nusc = nusc
            self.result_path = result_path
            self.eval_set = "custom"
            self.output_dir = output_dir
            self.verbose = verbose
            self.cfg = config
            self.plot_dir = os.path.join(output_dir, "plots")
            if set(classes) != set(config.class_names):
                config.class_range = {name: config.class_range[name] for name in classes}
                config.class_names = config.class_range.keys()
            self.pred_boxes, self.meta = load_prediction(
                result_path, config.max_boxes_per_sample, DetectionBox, verbose=verbose
            )
            self.gt_boxes = load_gt_of_sample_tokens(nusc, list(sample_tokens), DetectionBox, verbose=verbose)
            for boxes in (self.gt_boxes, self.pred_boxes):
                for token in boxes.sample_tokens:
                    boxes.boxes[token] = [b for b in boxes.boxes[token] if b.detection_name in config.class_range]
            if set(self.pred_boxes.sample_tokens) != set(self.gt_boxes.sample_tokens):
                raise RuntimeError("internal error: predicted and ground-truth sample tokens differ")
            self.pred_boxes = filter_eval_boxes(
                nusc, add_center_dist(nusc, self.pred_boxes), config.class_range, verbose=verbose
            )
            self.gt_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, self.gt_boxes), config.class_range, verbose)
            self.sample_tokens = self.gt_boxes.sample_tokens

    return SampleTokenDetectionEval


def _SampleTokenDetectionEval(*args: Any, **kwargs: Any):
    return _evaluator_class()(*args, **kwargs)
