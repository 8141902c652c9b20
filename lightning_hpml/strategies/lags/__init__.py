"""LAGS-SGD: layer-wise adaptive gradient sparsification, pipelined with backward (Shi et al., ECAI 2020)."""

from .cost_model import LinkCost, measure_link_cost
from .planner import plan_densities
from .reducer import PAPER_SETTINGS, ExchangeStats, LAGSCommunicationError, LayerwiseSparseReducer
from .strategy import LAGSStrategy
from .topk import num_selected, select_topk_with_residual

__all__ = [
    "PAPER_SETTINGS",
    "ExchangeStats",
    "LAGSCommunicationError",
    "LAGSStrategy",
    "LayerwiseSparseReducer",
    "LinkCost",
    "measure_link_cost",
    "num_selected",
    "plan_densities",
    "select_topk_with_residual",
]
