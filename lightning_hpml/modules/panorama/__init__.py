"""Panorama depth: SphereDepth (depth on an icosphere mesh) and its LightningModule."""

from lightning_hpml.modules.panorama.depth_module import (
    SphereDepthModule,
    berhu_loss,
    evaluate_depth,
    panorama_point_cloud,
)
from lightning_hpml.modules.panorama.spheredepth import SphereDepth

__all__ = ["SphereDepth", "SphereDepthModule", "berhu_loss", "evaluate_depth", "panorama_point_cloud"]
