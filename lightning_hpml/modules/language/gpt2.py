"""GPT-2-style causal language model: the workload Elixir's paper and benchmarks train.

Radford et al., "Language Models are Unsupervised Multitask Learners", 2019 (architecture); sizes follow the Elixir
benchmark's ``GPTLMModel`` (hpcaitech/Elixir ``example/common/models.py``: hidden size, layers, heads). Pre-LayerNorm
blocks, learned position embeddings, GELU MLP of 4x width, and the output projection tied to the token embedding
(the multi-used parameter Elixir keeps in a resident chunk).

Differences from GPT-2: no dropout (the strategy tests compare losses exactly); attention through
``torch.nn.functional.scaled_dot_product_attention``; weights initialised with std 0.02 and residual projections
scaled by ``1/sqrt(2 * layers)`` as in GPT-2's paper, without loading any released weights.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.registry import register_model

__all__ = ["GPT2", "GPT2LMModule"]


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads)
        self.ln_2 = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, 4 * hidden)
        self.proj = nn.Linear(4 * hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    """Token ids (B, T) -> logits (B, T, vocab)."""

    def __init__(
        self, vocab_size: int = 50257, max_len: int = 1024, hidden: int = 768, layers: int = 12, heads: int = 12
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.wte = nn.Embedding(vocab_size, hidden)
        self.wpe = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for block in self.blocks:
            for proj in (block.attn.proj, block.proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len {self.max_len}")
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _gpt2(hidden: int, layers: int, heads: int, **kwargs) -> GPT2:
    return GPT2(hidden=hidden, layers=layers, heads=heads, **kwargs)


@register_model
def gpt2_tiny(**kwargs) -> GPT2:
    """Test size: 2 layers of width 64, vocabulary 256 (about 0.13M parameters)."""
    return _gpt2(**{"hidden": 64, "layers": 2, "heads": 4, "vocab_size": 256, "max_len": 128, **kwargs})


@register_model
def gpt2_bench(**kwargs) -> GPT2:
    """CPU benchmark size: 4 layers of width 256, 8 heads (about 5M parameters with an 8192-token vocabulary)."""
    return _gpt2(**{"hidden": 256, "layers": 4, "heads": 8, "vocab_size": 8192, "max_len": 256, **kwargs})


@register_model
def gpt2_small(**kwargs) -> GPT2:
    """GPT-2 small: 768 wide, 12 layers, 12 heads (124M parameters)."""
    return _gpt2(**{"hidden": 768, "layers": 12, "heads": 12, **kwargs})


@register_model
def gpt2_400m(**kwargs) -> GPT2:
    """Elixir benchmark's gpt2-400m: 1024 wide, 24 layers, 16 heads."""
    return _gpt2(**{"hidden": 1024, "layers": 24, "heads": 16, **kwargs})


@register_model
def gpt2_1b(**kwargs) -> GPT2:
    """Elixir benchmark's gpt2-1b: 1536 wide, 32 layers, 24 heads."""
    return _gpt2(**{"hidden": 1536, "layers": 32, "heads": 24, **kwargs})


@register_model
def gpt2_4b(**kwargs) -> GPT2:
    """Elixir benchmark's gpt2-4b: 3072 wide, 32 layers, 24 heads."""
    return _gpt2(**{"hidden": 3072, "layers": 32, "heads": 24, **kwargs})


class GPT2LMModule(L.LightningModule):
    """Next-token language modelling with a GPT-2 from the registry.

    Batch: ``tokens`` (B, T) int64. Logs ``train/loss`` and ``val/loss`` (mean cross-entropy, nats per token).
    The model is built in ``configure_model`` so strategies that shard or chunk it can take over from the start.

    Args:
        model: Registered GPT-2 size (``gpt2_tiny``, ``gpt2_small``, ...).
        vocab_size, max_len: Override the size's vocabulary and context length.
        lr, weight_decay: AdamW settings (no decay on biases, LayerNorm weights and embeddings' positions).
    """

    def __init__(
        self,
        model: str = "gpt2_tiny",
        vocab_size: int | None = None,
        max_len: int | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model_name = model
        self.model_kwargs = {k: v for k, v in {"vocab_size": vocab_size, "max_len": max_len}.items() if v is not None}
        self.lr = lr
        self.weight_decay = weight_decay
        self.net: GPT2 | None = None

    def configure_model(self) -> None:
        if self.net is None:
            from lightning_hpml.modules.registry import create_model

            self.net = create_model(self.model_name, **self.model_kwargs)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)

    def _loss(self, tokens: Tensor) -> Tensor:
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch["tokens"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["tokens"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch["tokens"]), batch_size=batch["tokens"].shape[0], sync_dist=True)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and "wpe" not in name else no_decay).append(p)
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
        )
