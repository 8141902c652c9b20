"""The user's optimizer, rewired to update flat fp32 shards instead of the full parameters.

Elixir replaces each parameter in ``param_groups`` by "fake" parameters that view this rank's fp32 master shard and
points their ``.grad`` at the reduced gradient shard before each step (``wrapper/optimizer.py`` on hpcaitech/
ColossalAI ``feature/elixir``). Here the same is done in place on the user's own optimizer object, so Lightning, LR
schedulers and ``configure_optimizers`` keep working unchanged. Consecutive parameters of one chunk that share a
param group become one flat view, so with a single param group every shard is updated as one vectorised tensor.
Shards on the CPU are updated by the CPU kernels and device shards on the device (the optimizer groups its tensors by
device): that is the hybrid CPU/GPU optimizer, with PyTorch's own Adam/AdamW/SGD kernels.

Only element-wise optimizers are allowed: their update of an element depends on that element's history alone, so
updating shards gives exactly the full-parameter update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer

from .chunk import Chunk
from .runtime import ChunkRuntime

__all__ = ["ELEMENTWISE_OPTIMIZERS", "ShardedParamGroups"]

#: Optimizers whose update is element-wise (safe to apply to shards).
ELEMENTWISE_OPTIMIZERS: tuple[type[Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.Adagrad,
    torch.optim.RMSprop,
)


@dataclass
class _ShardRun:
    """A flat run of this rank's shard of one chunk: parameters of one param group, contiguous."""

    chunk: Chunk
    begin: int
    end: int
    param_ids: list[int]
    fake: nn.Parameter


class ShardedParamGroups:
    """Rewrites ``optimizer.param_groups`` to shard views of ``runtime``'s chunks (see the module docstring)."""

    def __init__(self, optimizer: Optimizer, runtime: ChunkRuntime) -> None:
        if not isinstance(optimizer, ELEMENTWISE_OPTIMIZERS):
            names = ", ".join(cls.__name__ for cls in ELEMENTWISE_OPTIMIZERS)
            raise TypeError(
                f"ElixirStrategy updates sharded flat parameters, which needs an element-wise optimizer ({names}); "
                f"got {type(optimizer).__name__}"
            )
        if optimizer.state:
            raise RuntimeError("ElixirStrategy must take over the optimizer before its first step (state is not empty)")
        self.optimizer = optimizer
        self.runtime = runtime
        group_of: dict[int, int] = {}
        for g, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                if id(p) not in runtime.slot_of and p.requires_grad:
                    raise ValueError(
                        f"optimizer param group {g} holds a trainable tensor of shape {tuple(p.shape)} that is not a "
                        "parameter of the LightningModule; ElixirStrategy can only optimize the module's parameters"
                    )
                group_of[id(p)] = g
        missing = [s.name for c in runtime.chunks for s in c.slots if id(s.param) not in group_of]
        if missing:
            raise ValueError(
                f"{len(missing)} trainable parameters are in no optimizer param group (e.g. {missing[:3]}); freeze "
                "them (requires_grad=False) or add them to the optimizer"
            )
        self.runs: list[_ShardRun] = []
        new_params: list[list[nn.Parameter]] = [[] for _ in optimizer.param_groups]
        for chunk in runtime.chunks:
            current: _ShardRun | None = None
            current_group = -1
            for slot in chunk.slots:
                span = chunk.shard_range(slot)
                if span is None:
                    continue
                g = group_of[id(slot.param)]
                if current is not None and current_group == g and current.end == span[0]:
                    current.end = span[1]
                    current.param_ids.append(id(slot.param))
                    continue
                current = _ShardRun(chunk, span[0], span[1], [id(slot.param)], None)  # type: ignore[arg-type]
                current_group = g
                self.runs.append(current)
                new_params[g].append(current)  # type: ignore[arg-type]
        for run in self.runs:
            run.fake = nn.Parameter(run.chunk.master[run.begin : run.end])
        for g, group in enumerate(optimizer.param_groups):
            group["params"] = [run.fake for run in new_params[g]]  # type: ignore[union-attr]

    def fake_parameters(self) -> list[nn.Parameter]:
        return [run.fake for run in self.runs]

    def grad_shards(self) -> list[Tensor]:
        return [chunk.grad for chunk in self.runtime.chunks]

    def attach_grads(self, group) -> None:
        """Point each flat view's ``.grad`` at its gradient shard, or None if no rank produced a gradient for it."""
        param_ids = list(self.runtime.had_grad)  # the same order on every rank (plan order)
        had = torch.tensor([self.runtime.had_grad[pid] for pid in param_ids], dtype=torch.uint8)
        if group is not None and dist.get_world_size(group) > 1:
            device = self.runtime.compute_device if dist.get_backend(group) == dist.Backend.NCCL else "cpu"
            had = had.to(device)
            dist.all_reduce(had, op=dist.ReduceOp.MAX, group=group)
        any_rank = dict(zip(param_ids, had.tolist()))
        for run in self.runs:
            used = any(any_rank[pid] for pid in run.param_ids)
            run.fake.grad = run.chunk.grad[run.begin : run.end] if used else None
