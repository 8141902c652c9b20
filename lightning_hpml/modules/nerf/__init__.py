"""Neural radiance fields: CF-NeRF (camera-parameter-free, incremental) and its building blocks."""

from lightning_hpml.modules.nerf.cf_nerf import CFNeRFModule
from lightning_hpml.modules.nerf.incremental_schedule import IncrementalSchedule, Stage
from lightning_hpml.modules.nerf.learned_cameras import LearnedCameras, axis_angle_to_matrix
from lightning_hpml.modules.nerf.radiance_field import RadianceField, positional_encoding

__all__ = [
    "CFNeRFModule",
    "IncrementalSchedule",
    "LearnedCameras",
    "RadianceField",
    "Stage",
    "axis_angle_to_matrix",
    "positional_encoding",
]
