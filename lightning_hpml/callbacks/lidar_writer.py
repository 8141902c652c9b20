"""Write LiDAR detections: KITTI result files for the benchmark server, and open3d point clouds with box outlines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import open3d as o3d
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from lightning_hpml.callbacks.output_folder import refuse_non_empty_folder
from lightning_hpml.datamodules.formats.kitti_object import boxes_to_corners, kitti_result_label, write_label

__all__ = ["LiDARPredictionWriter", "box_line_set"]

_BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])


def box_line_set(boxes: np.ndarray, colour: tuple[float, float, float] = (1.0, 0.2, 0.1)) -> o3d.geometry.LineSet:
    """The 12 edges of each LiDAR box (M, 7) as one open3d line set (readable by any ``.ply`` viewer)."""
    corners = boxes_to_corners(np.asarray(boxes, dtype=np.float64).reshape(-1, 7)).reshape(-1, 3)
    edges = (_BOX_EDGES[None] + 8 * np.arange(len(corners) // 8)[:, None, None]).reshape(-1, 2)
    lines = o3d.geometry.LineSet(o3d.utility.Vector3dVector(corners), o3d.utility.Vector2iVector(edges))
    lines.colors = o3d.utility.Vector3dVector(np.tile(np.asarray(colour, dtype=np.float64), (len(edges), 1)))
    return lines


class LiDARPredictionWriter(BasePredictionWriter):
    """Save each frame's detections from :class:`~lightning_hpml.modules.lidar.LiDARDetectionModule`.

    Output layout::

        <output_dir>/label_2/<frame>.txt    KITTI result file (16 fields, camera frame; needs ``calib``)
        <output_dir>/points/<frame>.ply     the input point cloud (LiDAR frame; grey = reflectance)
        <output_dir>/boxes/<frame>.ply      predicted boxes as line sets (LiDAR frame)

    Batches need ``frame_id`` and ``points``; KITTI files also need ``calib`` and ``image_shape`` (skipped for
    datasets without them, e.g. nuScenes). A non-empty ``output_dir`` is refused unless ``overwrite=True``.

    Args:
        output_dir: Folder to write into.
        classes: Class names in label order (KITTI result files).
        point_clouds: Also write ``points/`` and ``boxes/``.
        overwrite: Allow writing into a non-empty folder.
    """

    def __init__(
        self,
        output_dir: str,
        classes: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist"),
        point_clouds: bool = True,
        overwrite: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir, self.classes = Path(output_dir), tuple(classes)
        self.point_clouds, self.overwrite = point_clouds, overwrite

    @override
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            refuse_non_empty_folder(self.output_dir, self.overwrite)

    @override
    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: list[dict[str, Any]],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        missing = [k for k in ("frame_id", "points") if k not in batch]
        if missing:
            raise KeyError(f"LiDARPredictionWriter needs batch keys {missing} to name and save the predictions")
        for i, detection in enumerate(prediction):
            frame = str(batch["frame_id"][i])
            boxes = detection["boxes"].detach().double().cpu().numpy()
            labels = detection["labels"].cpu().tolist()
            if any(not 1 <= k <= len(self.classes) for k in labels):
                raise ValueError(f"frame {frame}: labels {labels} do not index `classes` {list(self.classes)}")
            if "calib" in batch:
                image_shape = batch["image_shape"][i] if "image_shape" in batch else None
                scores = detection["scores"].detach().double().cpu().numpy()
                names = [self.classes[k - 1] for k in labels]
                label = kitti_result_label(boxes, scores, names, batch["calib"][i], image_shape)
                write_label(self.output_dir / "label_2" / f"{frame}.txt", label)
            if self.point_clouds:
                self._write_clouds(frame, batch["points"][i].detach().double().cpu().numpy(), boxes)

    def _write_clouds(self, frame: str, points: np.ndarray, boxes: np.ndarray) -> None:
        cloud_path, boxes_path = self.output_dir / "points" / f"{frame}.ply", self.output_dir / "boxes" / f"{frame}.ply"
        for path in (cloud_path, boxes_path):
            if path.exists() and not self.overwrite:
                raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
            path.parent.mkdir(parents=True, exist_ok=True)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[:, :3]))
        if points.shape[1] > 3:
            grey = np.clip(points[:, 3:4], 0.0, 1.0)
            cloud.colors = o3d.utility.Vector3dVector(np.repeat(0.3 + 0.7 * grey, 3, axis=1))
        if not o3d.io.write_point_cloud(str(cloud_path), cloud):
            raise OSError(f"open3d could not write {cloud_path}")
        if not o3d.io.write_line_set(str(boxes_path), box_line_set(boxes)):
            raise OSError(f"open3d could not write {boxes_path}")
