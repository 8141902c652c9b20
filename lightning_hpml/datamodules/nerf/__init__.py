"""DataModules for NeRF: Nerfbusters (nerfstudio layout) and plain image sequences."""

from lightning_hpml.datamodules.nerf.nerfbuster import NERFBUSTER_SCENES, ImageSequence, NeRFBusterDataModule

__all__ = ["NERFBUSTER_SCENES", "ImageSequence", "NeRFBusterDataModule"]
