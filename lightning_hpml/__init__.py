"""lightning-hpml: Lightning strategies, models and datamodules from the HKBU-HPML family of papers.

Importing the package registers its strategy names with Lightning's ``StrategyRegistry`` and its models with the
model registry (:func:`lightning_hpml.modules.create_model`).
"""

from lightning_hpml.strategies import register_all as _register_strategies

_register_strategies()

from lightning_hpml.modules import create_model, list_models

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models"]
