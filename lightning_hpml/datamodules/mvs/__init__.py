"""Multi-view stereo DataModules: DTU (MVSNet training layout) and project folders (DTU evaluation set, Tanks and
Temples) for prediction."""

from lightning_hpml.datamodules.mvs.dtu import DTUDataModule, DTUViews
from lightning_hpml.datamodules.mvs.project import MVSProjectDataModule, MVSProjectViews

__all__ = ["DTUDataModule", "DTUViews", "MVSProjectDataModule", "MVSProjectViews"]
