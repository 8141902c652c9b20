"""One profiling pass of the training step: which parameters each module call touches, and the activation size.

Elixir traces the step on the meta device and measures the activation peak on CUDA
(``tracer/param_tracer``, ``tracer/memory_tracer``). Here one real forward pass of ``training_step`` runs on the
plain module (before any chunking, so on the host), under forked RNG and with buffers (BatchNorm statistics)
and torchmetrics states restored afterwards, so the real first step is unchanged (and metrics updated inside
``training_step`` do not count the profiling batch), with Lightning logging switched off. Module forward pre-hooks give the access order; a saved-tensor hook sums the bytes
autograd keeps for backward, which is the activation memory the plan must leave room for. The backward order is
taken as the reverse of the forward order, which holds for the feed-forward models this targets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchmetrics import Metric

__all__ = ["StepProfile", "profile_forward"]


@dataclass
class StepProfile:
    """What the plan search needs from a training step."""

    module_calls: list[list[str]] = field(default_factory=list)  # trainable parameter names per module call
    activation_bytes: int = 0

    def first_use_order(self, names: list[str]) -> list[str]:
        """``names`` sorted by first use; parameters the step never touched go last, in the given order."""
        seen: dict[str, None] = {}
        for call in self.module_calls:
            for name in call:
                seen.setdefault(name, None)
        ordered = [n for n in seen if n in set(names)]
        return ordered + [n for n in names if n not in seen]

    def to_dict(self) -> dict:
        return {"module_calls": self.module_calls, "activation_bytes": self.activation_bytes}

    @classmethod
    def from_dict(cls, data: dict) -> StepProfile:
        return cls([list(c) for c in data["module_calls"]], int(data["activation_bytes"]))


@contextmanager
def _logging_disabled(module: nn.Module):
    """LightningModule.log refuses to run outside a loop; the profiling pass must not log anyway."""
    patched = [name for name in ("log", "log_dict") if hasattr(module, name)]
    for name in patched:
        setattr(module, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for name in patched:
            delattr(module, name)


def profile_forward(module: nn.Module, run_forward: Callable[[], object]) -> StepProfile:
    """Run ``run_forward`` (one forward pass of the step, building the autograd graph) and record it."""
    names = {id(p): name for name, p in module.named_parameters() if p.requires_grad}
    param_storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
    profile = StepProfile()
    counted: set[int] = set()

    def before_call(mod: nn.Module, args) -> None:
        used = [names[id(p)] for p in mod.parameters(recurse=False) if id(p) in names]
        if used:
            profile.module_calls.append(used)

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_storages and ptr not in counted:
            counted.add(ptr)
            profile.activation_bytes += storage.nbytes()
        return tensor

    handles = [m.register_forward_pre_hook(before_call) for m in module.modules()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    buffers = [(b, b.detach().clone()) for b in module.buffers()]  # e.g. BatchNorm statistics: must not move
    metrics = [(m, _metric_snapshot(m)) for m in module.modules() if isinstance(m, Metric)]  # train/* metrics
    try:
        with torch.random.fork_rng(devices=devices), _logging_disabled(module):
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                output = run_forward()
            del output
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for metric, saved in metrics:
            _metric_restore(metric, saved)
    return profile


def _metric_snapshot(metric: Metric) -> dict:
    state = {key: copy.deepcopy(value) for key, value in metric.metric_state.items()}
    return {"state": state, "update_count": metric._update_count, "computed": metric._computed}


def _metric_restore(metric: Metric, saved: dict) -> None:
    for key, value in saved["state"].items():
        setattr(metric, key, value)
    metric._update_count = saved["update_count"]
    metric._computed = saved["computed"]
