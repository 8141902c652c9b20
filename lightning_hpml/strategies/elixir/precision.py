"""Elixir's precision plugin: compute dtype, autocast, loss scaling, and the optimizer step on shards.

Lightning's stock plugins assume full ``.grad`` tensors on every parameter; here gradients live in flat shards, so
backward, clipping and the step are done against the shards (as the lightning-colossalai plugin did for Gemini).
``"32-true"`` computes in fp32 (bit-for-bit plain training up to summation order); ``"bf16-mixed"`` and
``"16-mixed"`` gather the chunk payloads in bf16/fp16 and run forward under autocast, with fp32 master weights,
gradients and optimizer state; fp16 adds dynamic loss scaling with a cross-rank overflow decision, bf16 needs none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.plugins.precision.half import HalfPrecision
from torch import Tensor
from torch.optim import Optimizer

from .loss_scaler import DynamicLossScaler

__all__ = ["ElixirPrecision"]

_DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class ElixirPrecision(Precision):
    """Args:
    precision: ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"``.
    init_scale, growth_interval: fp16 dynamic loss-scaling settings (ignored otherwise).
    """

    def __init__(self, precision: str = "32-true", init_scale: float = 2.0**16, growth_interval: int = 1000) -> None:
        if precision not in _DTYPES:
            raise ValueError(f"ElixirPrecision supports {sorted(_DTYPES)}, got precision={precision!r}")
        self.precision = precision  # type: ignore[assignment]
        self.compute_dtype = _DTYPES[precision]
        self.scaler = (
            DynamicLossScaler(init_scale, growth_interval=growth_interval) if precision == "16-mixed" else None
        )
        self.device_type = "cpu"
        self.runtime = None  # set by ElixirStrategy.setup
        self.shards = None
        self.group = None

    @classmethod
    def from_plugin(cls, plugin: Precision) -> ElixirPrecision:
        """The Elixir equivalent of the plugin Lightning built from ``Trainer(precision=...)``."""
        if isinstance(plugin, ElixirPrecision):
            return plugin
        if isinstance(plugin, MixedPrecision):
            return cls(plugin.precision)
        if isinstance(plugin, HalfPrecision):
            raise ValueError(  # noqa: TRY004  (the user chose a precision value, not a wrong type)
                f"ElixirStrategy keeps fp32 master weights; use precision='bf16-mixed' or '16-mixed' instead of "
                f"{plugin.precision!r}"
            )
        if type(plugin) is Precision:
            return cls("32-true")
        raise ValueError(f"ElixirStrategy cannot work with the precision plugin {type(plugin).__name__}")

    # ------------------------------------------------------------------ forward
    @contextmanager
    def forward_context(self) -> Iterator[None]:
        with self.forward_context_on(self.device_type):
            yield

    def forward_context_on(self, device_type: str):
        """Autocast to the compute dtype on ``device_type`` (nothing for fp32)."""
        if self.compute_dtype is torch.float32:
            return nullcontext()
        return torch.autocast(device_type, dtype=self.compute_dtype)

    # ------------------------------------------------------------------ backward
    def pre_backward(self, tensor: Tensor, module: pl.LightningModule) -> Tensor:  # type: ignore[override]
        tensor = super().pre_backward(tensor, module)
        return tensor * self.scaler.scale if self.scaler is not None else tensor

    def backward(self, tensor: Tensor, model: pl.LightningModule, optimizer, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().backward(tensor, model, optimizer, *args, **kwargs)
        self.runtime.finish_backward()

    # ------------------------------------------------------------------ step
    def optimizer_step(  # type: ignore[override]
        self, optimizer: Optimizer, model: pl.LightningModule, closure: Callable[[], Any], **kwargs: Any
    ) -> Any:
        closure_result = closure()
        overflow = False
        grads = self.shards.grad_shards()
        if self.scaler is not None:
            overflow = self.scaler.found_overflow(grads, self.group)
            if not overflow:
                for g in grads:
                    g.mul_(1.0 / self.scaler.scale)
        self.shards.attach_grads(self.group)
        self._after_closure(model, optimizer)  # on_before_optimizer_step hooks, then gradient clipping
        if closure_result is None and model.automatic_optimization:
            self.runtime.zero_grad()  # training_step returned None: Lightning skips the step
            return None
        if not overflow:
            optimizer.step(**kwargs)
        if self.scaler is not None:
            self.scaler.update(overflow)
        self.runtime.after_optimizer_step()
        return closure_result

    def main_params(self, optimizer: Optimizer):  # type: ignore[override]
        return self.shards.fake_parameters()

    def clip_grad_by_norm(self, optimizer: Optimizer, clip_val: float) -> None:
        """Clip by the global L2 norm over every rank's gradient shards (each element counted once)."""
        grads = self.shards.grad_shards()
        squares = torch.stack([g.float().pow(2).sum().cpu() for g in grads]).sum().reshape(1)
        if self.group is not None and dist.get_world_size(self.group) > 1:
            if dist.get_backend(self.group) == dist.Backend.NCCL:
                squares = squares.cuda()
            dist.all_reduce(squares, group=self.group)
        total = float(squares.sqrt().item())
        coefficient = clip_val / (total + 1e-6)
        if coefficient < 1.0:
            for g in grads:
                g.mul_(coefficient)

    def clip_grad_by_value(self, optimizer: Optimizer, clip_val: float) -> None:
        for g in self.shards.grad_shards():
            g.clamp_(-clip_val, clip_val)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and "scaler" in state_dict:
            self.scaler.load_state_dict(state_dict["scaler"])
