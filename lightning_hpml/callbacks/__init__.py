"""Lightning callbacks shipped with lightning-hpml."""

from lightning_hpml.callbacks.cf_nerf_export import CFNeRFExporter
from lightning_hpml.callbacks.disparity_writer import DisparityWriter
from lightning_hpml.callbacks.lidar_writer import LiDARPredictionWriter
from lightning_hpml.callbacks.mvs_writer import MVSPredictionWriter

__all__ = ["CFNeRFExporter", "DisparityWriter", "LiDARPredictionWriter", "MVSPredictionWriter"]
