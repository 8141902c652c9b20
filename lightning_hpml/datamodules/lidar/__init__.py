"""LiDAR 3D object detection DataModules (KITTI 3D object, nuScenes) and their point-cloud augmentation.

Batches are dicts of per-frame lists (point and box counts differ per frame): ``points``, ``boxes`` (LiDAR frame,
``x, y, z_centre, l, w, h, yaw``), ``labels``, ``calib``, ... (see :mod:`.kitti_object`).
"""

from lightning_hpml.datamodules.lidar.augmentation import GTDatabase
from lightning_hpml.datamodules.lidar.kitti_object import (
    KITTI_OBJECT_LAYOUT,
    RIDE_GT_SAMPLING,
    KITTIObjectDataModule,
    KittiObjectDataset,
    kitti_object_collate,
)
from lightning_hpml.datamodules.lidar.nuscenes import NuScenesDataModule, NuScenesDataset

__all__ = [
    "KITTI_OBJECT_LAYOUT",
    "RIDE_GT_SAMPLING",
    "GTDatabase",
    "KITTIObjectDataModule",
    "KittiObjectDataset",
    "NuScenesDataModule",
    "NuScenesDataset",
    "kitti_object_collate",
]
