"""Stereo disparity models and their LightningModule."""

from lightning_hpml.modules.stereo.dispnet import DispNetC, DispNetRes
from lightning_hpml.modules.stereo.fadnet import FADNet
from lightning_hpml.modules.stereo.losses import FADNET_SCENEFLOW_ROUNDS, LossRound, MultiScaleDisparityLoss
from lightning_hpml.modules.stereo.stereo_module import StereoModule

__all__ = [
    "FADNET_SCENEFLOW_ROUNDS",
    "DispNetC",
    "DispNetRes",
    "FADNet",
    "LossRound",
    "MultiScaleDisparityLoss",
    "StereoModule",
]
