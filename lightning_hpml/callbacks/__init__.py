"""Lightning callbacks shipped with lightning-hpml."""

from lightning_hpml.callbacks.disparity_writer import DisparityWriter

__all__ = ["DisparityWriter"]
