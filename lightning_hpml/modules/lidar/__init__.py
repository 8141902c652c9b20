"""LiDAR 3-D object detection: IA-SSD and RIDE's rotation-invariant version of it (importing registers the sizes)."""

from lightning_hpml.modules.lidar.detection_module import LiDARDetectionModule
from lightning_hpml.modules.lidar.ia_ssd import IASSD, ia_ssd, ia_ssd_tiny, ride_ia_ssd, ride_ia_ssd_tiny
from lightning_hpml.modules.lidar.ia_ssd_head import IASSDHead, IASSDLoss
from lightning_hpml.modules.lidar.rotation_invariant import rotation_invariant_features

__all__ = [
    "IASSD",
    "IASSDHead",
    "IASSDLoss",
    "LiDARDetectionModule",
    "ia_ssd",
    "ia_ssd_tiny",
    "ride_ia_ssd",
    "ride_ia_ssd_tiny",
    "rotation_invariant_features",
]
