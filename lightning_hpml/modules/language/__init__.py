"""Language models used as strategy workloads (Elixir's GPT-2 sizes)."""

from lightning_hpml.modules.language.gpt2 import GPT2, GPT2LMModule

__all__ = ["GPT2", "GPT2LMModule"]
