"""Panorama depth DataModules: Stanford2D3D, Matterport3D, 3D60 (real layouts, synthetic trees when root=None)."""

from lightning_hpml.datamodules.panorama.base import PanoramaDataModule, PanoramaDataset
from lightning_hpml.datamodules.panorama.datasets import (
    D3D60DataModule,
    Matterport3DDataModule,
    Stanford2D3DDataModule,
)

__all__ = [
    "D3D60DataModule",
    "Matterport3DDataModule",
    "PanoramaDataModule",
    "PanoramaDataset",
    "Stanford2D3DDataModule",
]
