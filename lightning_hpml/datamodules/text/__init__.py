"""Token streams for language-model workloads (nanoGPT's uint16 .bin format)."""

from lightning_hpml.datamodules.text.token_stream import TokenStreamDataModule, TokenWindows, write_markov_tokens

__all__ = ["TokenStreamDataModule", "TokenWindows", "write_markov_tokens"]
