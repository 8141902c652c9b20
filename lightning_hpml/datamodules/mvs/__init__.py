"""Multi-view stereo DataModules: DTU (MVSNet training layout)."""

from lightning_hpml.datamodules.mvs.dtu import DTUDataModule, DTUViews

__all__ = ["DTUDataModule", "DTUViews"]
