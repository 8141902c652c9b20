"""EASNet: an elastic (Once-for-All) AANet supernet for stereo matching, its sub-networks, search and training.

Importing this package registers ``easnet``, ``easnet_large`` and ``easnet_small``.
"""

from lightning_hpml.modules.stereo.easnet.module import (
    EASNET_SCENEFLOW_PHASES,
    EASNetModule,
    ShrinkPhase,
    aanet_loss,
    pyramid_weights,
)
from lightning_hpml.modules.stereo.easnet.search import SearchResult, evaluate_epe, measure_latency, search_subnet
from lightning_hpml.modules.stereo.easnet.supernet import EASNet, EASNetSubnet, SubnetConfig, reestimate_bn

__all__ = [
    "EASNET_SCENEFLOW_PHASES",
    "EASNet",
    "EASNetModule",
    "EASNetSubnet",
    "SearchResult",
    "ShrinkPhase",
    "SubnetConfig",
    "aanet_loss",
    "evaluate_epe",
    "measure_latency",
    "pyramid_weights",
    "reestimate_bn",
    "search_subnet",
]
