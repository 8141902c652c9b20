"""Multi-view stereo: DispMVS (network and LightningModule) and depth-map fusion into point clouds."""

from lightning_hpml.modules.mvs.depth_fusion import fuse_depth_maps
from lightning_hpml.modules.mvs.dispmvs import DispMVS, dispmvs, dispmvs_tiny
from lightning_hpml.modules.mvs.dispmvs_module import DispMVSModule, dispmvs_loss

__all__ = ["DispMVS", "DispMVSModule", "dispmvs", "dispmvs_loss", "dispmvs_tiny", "fuse_depth_maps"]
