"""Training strategies, registered with Lightning's ``StrategyRegistry`` when ``lightning_hpml`` is imported.

Each strategy class defines a ``register_strategies(registry)`` classmethod (Lightning's own convention) and is listed
in :data:`STRATEGY_CLASSES`; :func:`register_all` adds their names, skipping names that are already registered so
importing the package twice (or beside another plugin) is harmless.
"""

from __future__ import annotations

from lightning.pytorch.strategies import Strategy, StrategyRegistry

from .elixir import ElixirStrategy
from .lags import LAGSStrategy

__all__ = ["STRATEGY_CLASSES", "ElixirStrategy", "LAGSStrategy", "register_all"]

#: Strategy classes shipped by this package.
STRATEGY_CLASSES: tuple[type[Strategy], ...] = (ElixirStrategy, LAGSStrategy)


def register_all(registry=StrategyRegistry) -> list[str]:
    """Register every shipped strategy's names in ``registry``; return the names newly added."""
    added = []
    for cls in STRATEGY_CLASSES:
        before = set(registry)
        staging: dict = type(registry)()
        cls.register_strategies(staging)
        for name, entry in staging.items():
            if name not in before:
                registry[name] = entry
                added.append(name)
    return added
