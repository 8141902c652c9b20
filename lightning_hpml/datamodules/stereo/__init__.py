"""Stereo LightningDataModules (Scene Flow, KITTI 2012/2015) and the pieces they share.

Every DataModule reads its dataset in the authors' on-disk layout, or with ``root=None`` writes a small synthetic
tree in that same layout and reads it back with the same parser. Batches are dicts with ``left``/``right``
(B,3,H,W float32 in [0, 1]), ``disparity`` (B,1,H,W pixels), ``valid`` (B,1,H,W bool), ``name`` and ``index``.
"""

from lightning_hpml.datamodules.stereo.base import StereoDataModule
from lightning_hpml.datamodules.stereo.dataset import StereoDataset
from lightning_hpml.datamodules.stereo.irs import IRSDataModule
from lightning_hpml.datamodules.stereo.kitti import KITTIStereoDataModule
from lightning_hpml.datamodules.stereo.samples import StereoSample
from lightning_hpml.datamodules.stereo.sceneflow import SceneFlowDataModule
from lightning_hpml.datamodules.stereo.sintel import SintelStereoDataModule

__all__ = [
    "IRSDataModule",
    "KITTIStereoDataModule",
    "SceneFlowDataModule",
    "SintelStereoDataModule",
    "StereoDataModule",
    "StereoDataset",
    "StereoSample",
]
