"""``LiDARDetectionModule``: trains IA-SSD (or RIDE on IA-SSD) and evaluates it with KITTI AP and RIDE's rotation test.

Batch keys read (``shared/DESIGN.md``, :class:`~lightning_hpml.datamodules.lidar.KITTIObjectDataModule`): ``points``
(list of (N, 4) x, y, z, reflectance; equal N in a batch), ``boxes`` (list of (M, 7) LiDAR boxes), ``labels`` (list
of (M,) 1-based); for evaluation also ``calib``, ``image_shape``, ``annos`` (the raw KITTI labels), ``frame_id`` and
``rotation`` (the angle the DataModule rotated the scene by; predictions are rotated back before evaluation).

Training recipe (RIDE's ``tools/cfgs/kitti_models/IA-SSD.yaml``): OpenPCDet's ``adam_onecycle`` = AdamW with
decoupled weight decay 0.01 under a one-cycle schedule (max lr 0.01, 40 % warm-up, start lr = max / 10, beta1 cycled
0.95 -> 0.85), gradient-norm clipping 10 (set ``gradient_clip_val: 10`` on the Trainer, as the configs do), 80 epochs
at batch 8. Post-processing: score > 0.1, class-agnostic rotated NMS at BEV IoU 0.01, at most 500 boxes.

Evaluation: :class:`~lightning_hpml.metrics.kitti_detection.KITTIDetectionAP` (2D / BEV / 3D AP_R40 and AP_R11, AOS),
logged as ``val/<key>`` and ``test/<key>`` (e.g. ``test/ap3d_car_mod_r40``). A DataModule with a
``detection_metric()`` factory brings its own evaluation instead: :class:`~lightning_hpml.datamodules.lidar.
NuScenesDataModule` gives the devkit's nuScenes mAP / NDS (``test/map``, ``test/nds``, ``test/mate``, ...; set
``robustness_key: map``). With ``rotation_test=True`` every test
frame is evaluated twice, as RIDE's protocol: as given (NR, "no rotation", ``test/...``) and with the whole scene
rotated about the LiDAR z axis by an angle uniform in [-pi, pi] drawn from ``(rotation_seed, frame id)``, the
predictions rotated back before evaluation (AR, "arbitrary rotation", ``test/ar/...``). The rotation robustness is
logged as ``test/rotation_robustness`` = mAP_AR / mAP_NR of ``robustness_key`` (default the moderate 3D AP_R40
averaged over classes, ``ap3d_mod_r40``): 1 means
the detector is unaffected by rotation, 0 that it finds nothing once rotated. RIDE reports a "rotation robustness
improvement" without a formula we could confirm (see ``shared/reference``, section 5.1: UNVERIFIED); this ratio is
our definition, and ``test/rotation_drop`` = mAP_NR - mAP_AR (AP points) is logged next to it.

Validation also logs a bird's-eye view of the first frame (points, ground truth green, predictions red) to
TensorBoard as ``val/bev``. ``predict_step`` returns per-frame dicts of ``boxes``, ``scores``, ``labels`` (LiDAR
frame) and ``frame_id``; :class:`~lightning_hpml.callbacks.LiDARPredictionWriter` writes KITTI result files and
open3d point clouds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from lightning_hpml.datamodules.formats.kitti_object import kitti_result_label
from lightning_hpml.metrics.kitti_detection import KITTIDetectionAP
from lightning_hpml.modules.lidar.box_ops import rotate_points_along_z
from lightning_hpml.modules.lidar.ia_ssd import IASSD
from lightning_hpml.viz.bev import bird_eye_view

__all__ = ["LiDARDetectionModule", "rotate_scene", "scene_rotation_angle"]


def rotate_scene(points: Tensor, boxes: Tensor, angle: float) -> tuple[Tensor, Tensor]:
    """Rotate points (N, >=3) and boxes (M, 7) about the LiDAR z axis by ``angle`` (radians, counter-clockwise)."""
    turn = points.new_tensor([angle])
    points = rotate_points_along_z(points[None], turn)[0]
    centres = rotate_points_along_z(boxes[None, :, :6], turn.to(boxes.dtype))[0]
    yaw = torch.remainder(boxes[:, 6:7] + angle + math.pi, 2 * math.pi) - math.pi
    return points, torch.cat([centres, yaw], 1)


def scene_rotation_angle(seed: int, frame_id: str) -> float:
    """RIDE's test angle for a frame: uniform in [-pi, pi), a pure function of ``(seed, frame_id)``."""
    digest = hashlib.sha256(f"{seed}/{frame_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "little") / 2**64 * 2.0 - 1.0) * math.pi


class LiDARDetectionModule(L.LightningModule):
    """Args:
    detector: The detector (default: :class:`IASSD` at the official KITTI size; ``rotation_invariant=True`` = RIDE).
    classes: Class names in label order (must match the DataModule's ``classes``).
    lr, weight_decay, pct_start, div_factor, final_div_factor, moms: ``adam_onecycle`` (OpenPCDet's defaults).
    score_threshold, nms_iou, max_boxes: Post-processing.
    rotation_test: Evaluate test frames also under RIDE's arbitrary rotation (``test/ar/...``).
    rotation_seed: Seed of the per-frame test angles.
    robustness_key: The AP (a key of :class:`KITTIDetectionAP`'s results) the rotation robustness compares.
    include_loose: Also compute AP at the loose overlaps (0.7 / 0.5 / 0.5 -> 0.5 / 0.25 / 0.25 for BEV / 3D).
    """

    def __init__(
        self,
        detector: nn.Module | None = None,
        classes: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
        lr: float = 0.01,
        weight_decay: float = 0.01,
        pct_start: float = 0.4,
        div_factor: float = 10.0,
        final_div_factor: float = 1e4,
        moms: tuple[float, float] = (0.95, 0.85),
        score_threshold: float = 0.1,
        nms_iou: float = 0.01,
        max_boxes: int = 500,
        rotation_test: bool = True,
        rotation_seed: int = 0,
        robustness_key: str = "ap3d_mod_r40",
        include_loose: bool = False,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"`lr` must be positive, got {lr!r}")
        self.save_hyperparameters(ignore=["detector"])
        self.detector = detector if detector is not None else IASSD(num_classes=len(classes))
        if getattr(self.detector, "num_classes", len(classes)) != len(classes):
            raise ValueError(f"the detector has {self.detector.num_classes} classes, `classes` names {len(classes)}")
        self.classes = tuple(classes)
        self.val_ap = self.test_ap = self.test_ap_rotated = None  # built in `setup`, once the data is known

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule if self._trainer is not None else None
        factory = getattr(data, "detection_metric", None)  # the dataset's own evaluation (nuScenes), if any
        if factory is None:
            include_loose = self.hparams.include_loose
            factory = lambda: KITTIDetectionAP(classes=self.classes, include_loose=include_loose)
        self.val_ap, self.test_ap, self.test_ap_rotated = factory(), factory(), factory()

    # -- training -----------------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        outputs = self.detector(batch["points"])
        loss, parts = self.detector.loss(outputs, batch["boxes"], batch["labels"])
        batch_size = len(batch["points"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=batch_size)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=hp.lr / hp.div_factor, betas=(hp.moms[0], 0.99), weight_decay=hp.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=hp.lr,
            total_steps=max(int(self.trainer.estimated_stepping_batches), 1),
            pct_start=hp.pct_start,
            div_factor=hp.div_factor,
            final_div_factor=hp.final_div_factor,
            base_momentum=hp.moms[1],
            max_momentum=hp.moms[0],
            anneal_strategy="cos",
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- inference ----------------------------------------------------------------------------------------------
    def detect(self, points: list[Tensor]) -> list[dict[str, Tensor]]:
        """Boxes (K, 7), scores (K,) and 1-based labels (K,) per point cloud, after post-processing."""
        hp = self.hparams
        outputs = self.detector(points)
        return self.detector.predict_boxes(
            outputs, score_threshold=hp.score_threshold, nms_iou=hp.nms_iou, max_boxes=hp.max_boxes
        )

    def _detect_unrotated(self, batch: dict, extra_angles: Sequence[float] | None = None) -> list[dict[str, Tensor]]:
        """Detections in the frame of the raw labels: rotated by ``extra_angles`` first, then everything undone."""
        points = list(batch["points"])
        extra = [0.0] * len(points) if extra_angles is None else list(extra_angles)
        for i, angle in enumerate(extra):
            if angle:
                points[i] = rotate_scene(points[i], points[i].new_zeros(0, 7), angle)[0]
        detections = self.detect(points)
        for detection, given, angle in zip(detections, batch["rotation"].tolist(), extra):
            if given + angle:
                detection["boxes"] = rotate_scene(detection["boxes"][:, :3], detection["boxes"], -(given + angle))[1]
        return detections

    def _kitti_predictions(self, batch: dict, detections: list[dict[str, Tensor]]) -> list[dict[str, np.ndarray]]:
        return [
            kitti_result_label(
                d["boxes"].double().cpu().numpy(),
                d["scores"].double().cpu().numpy(),
                [self.classes[k - 1] for k in d["labels"].tolist()],
                calib,
                image_shape,
            )
            for d, calib, image_shape in zip(detections, batch["calib"], batch["image_shape"])
        ]

    def _update(self, metric, batch: dict, detections: list[dict[str, Tensor]]) -> None:
        """Feed detections (already in the unrotated frame) to a KITTI or a dataset-provided metric."""
        if isinstance(metric, KITTIDetectionAP):
            metric.update(self._kitti_predictions(batch, detections), batch["annos"])
        else:
            fields = {k: [d[k] for d in detections] for k in ("boxes", "scores", "labels")}
            metric.update(batch["frame_id"], **fields)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        detections = self._detect_unrotated(batch)
        self._update(self.val_ap, batch, detections)
        if batch_idx == 0:
            self._log_bev(batch, detections)

    def on_validation_epoch_end(self) -> None:
        self._log_ap("val", self.val_ap)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._update(self.test_ap, batch, self._detect_unrotated(batch))
        if self.hparams.rotation_test:
            angles = [scene_rotation_angle(self.hparams.rotation_seed, f) for f in batch["frame_id"]]
            self._update(self.test_ap_rotated, batch, self._detect_unrotated(batch, angles))

    def on_test_epoch_end(self) -> None:
        plain = self._log_ap("test", self.test_ap)
        if self.hparams.rotation_test:
            rotated = self._log_ap("test/ar", self.test_ap_rotated)
            key = self.hparams.robustness_key
            if key not in plain:
                raise KeyError(f"`robustness_key` {key!r} is not among the AP results {sorted(plain)}")
            nr, ar = float(plain[key]), float(rotated[key])
            self.log("test/rotation_robustness", ar / nr if nr > 0 else float("nan"))
            self.log("test/rotation_drop", nr - ar)

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        detections = self._detect_unrotated(batch)
        for detection, frame_id in zip(detections, batch["frame_id"]):
            detection["frame_id"] = frame_id
        return detections

    # -- logging ------------------------------------------------------------------------------------------------
    def _log_ap(self, prefix: str, metric) -> dict[str, Tensor]:
        results = metric.compute()
        metric.reset()
        self.log_dict({f"{prefix}/{k}": v for k, v in results.items()}, sync_dist=False)
        return results

    def _log_bev(self, batch: dict, detections: list[dict[str, Tensor]]) -> None:
        if not isinstance(self.logger, TensorBoardLogger) or self.trainer.sanity_checking or "boxes" not in batch:
            return
        angle = float(batch["rotation"][0])
        points, boxes = rotate_scene(batch["points"][0], batch["boxes"][0], -angle) if angle else (
            batch["points"][0], batch["boxes"][0])  # fmt: skip
        area = getattr(self.trainer.datamodule, "point_cloud_range", None)  # the DataModule's range, if it has one
        extent = {} if area is None else {"x_range": (area[0], area[3]), "y_range": (area[1], area[4])}
        image = bird_eye_view(points, boxes, detections[0]["boxes"], detections[0]["scores"], **extent)
        self.logger.experiment.add_image("val/bev", image, self.global_step, dataformats="HWC")
