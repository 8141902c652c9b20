"""Stereo disparity models (FADNet, FADNet++, EASNet, DispNormNet / DTN-Net) and their LightningModules."""

from lightning_hpml.modules.stereo.dispnet import DispNetC, DispNetRes
from lightning_hpml.modules.stereo.dispnormnet import DispNormModule, DispNormNet, DTNNet
from lightning_hpml.modules.stereo.easnet import EASNet, EASNetModule
from lightning_hpml.modules.stereo.fadnet import FADNet
from lightning_hpml.modules.stereo.fadnet_pp import FADNetPP
from lightning_hpml.modules.stereo.losses import FADNET_SCENEFLOW_ROUNDS, LossRound, MultiScaleDisparityLoss
from lightning_hpml.modules.stereo.normnet import NormNetS, disp2norm
from lightning_hpml.modules.stereo.stereo_module import StereoModule

__all__ = [
    "FADNET_SCENEFLOW_ROUNDS",
    "DTNNet",
    "DispNetC",
    "DispNetRes",
    "DispNormModule",
    "DispNormNet",
    "EASNet",
    "EASNetModule",
    "FADNet",
    "FADNetPP",
    "LossRound",
    "MultiScaleDisparityLoss",
    "NormNetS",
    "StereoModule",
    "disp2norm",
]
