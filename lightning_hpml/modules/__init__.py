"""Models (pure ``nn.Module`` families, registered by name) and the LightningModules that train them."""

# Importing the families registers their sizes.
from lightning_hpml.modules import language, lidar, mvs, panorama, stereo  # noqa: F401
from lightning_hpml.modules.registry import create_model, is_model, list_models, register_model

__all__ = ["create_model", "is_model", "list_models", "register_model"]
