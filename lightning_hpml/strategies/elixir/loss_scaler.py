"""Dynamic loss scaling for fp16 whose overflow decision is agreed by every rank.

``torch.amp.GradScaler`` checks the full ``.grad`` of each parameter on each rank; with sharded gradients each rank
sees only its shard, so an overflow on one rank must skip the step everywhere. This scaler all-reduces the overflow
flag (Elixir's own optimizer wrapper did not, see the reference notes) and otherwise follows GradScaler's rule:
halve on overflow, double after ``growth_interval`` clean steps.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DynamicLossScaler"]


class DynamicLossScaler:
    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 1000,
        min_scale: float = 1.0,
        max_scale: float = 2.0**24,
    ) -> None:
        if not (0 < backoff_factor < 1 < growth_factor):
            raise ValueError("need 0 < backoff_factor < 1 < growth_factor")
        self.scale = float(init_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.clean_steps = 0
        self.skipped_steps = 0

    def found_overflow(self, grads: list[Tensor], group) -> bool:
        """True if any rank has a non-finite gradient element."""
        local = any(bool((~torch.isfinite(g)).any()) for g in grads)
        flag = torch.tensor([float(local)])
        if group is not None and dist.get_world_size(group) > 1:
            if dist.get_backend(group) == dist.Backend.NCCL:
                flag = flag.cuda()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
        return bool(flag.item())

    def update(self, overflow: bool) -> None:
        if overflow:
            self.scale = max(self.min_scale, self.scale * self.backoff_factor)
            self.clean_steps = 0
            self.skipped_steps += 1
            return
        self.clean_steps += 1
        if self.clean_steps >= self.growth_interval:
            self.scale = min(self.max_scale, self.scale * self.growth_factor)
            self.clean_steps = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "clean_steps": self.clean_steps, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale = float(state["scale"])
        self.clean_steps = int(state["clean_steps"])
        self.skipped_steps = int(state["skipped_steps"])
