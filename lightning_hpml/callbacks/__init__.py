"""Lightning callbacks shipped with lightning-hpml."""

from lightning_hpml.callbacks.disparity_writer import DisparityWriter
from lightning_hpml.callbacks.mvs_writer import MVSPredictionWriter

__all__ = ["DisparityWriter", "MVSPredictionWriter"]
