"""Models (pure ``nn.Module`` families, registered by name) and the LightningModules that train them."""

from lightning_hpml.modules.registry import create_model, is_model, list_models, register_model

# Importing the families registers their sizes.
from lightning_hpml.modules import stereo  # noqa: E402,F401

__all__ = ["create_model", "is_model", "list_models", "register_model"]
