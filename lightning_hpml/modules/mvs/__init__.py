"""Multi-view stereo: depth-map fusion (DispMVS itself is planned)."""

from lightning_hpml.modules.mvs.depth_fusion import fuse_depth_maps

__all__ = ["fuse_depth_maps"]
