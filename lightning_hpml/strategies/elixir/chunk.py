"""A chunk: many parameters packed back to back in one flat buffer, sharded across ranks.

Each chunk owns three things (Elixir section 3; ``colossalai/elixir/chunk/core/chunk.py`` on the ``feature/elixir``
branch of hpcaitech/ColossalAI):

* the **payload**, the full chunk in the compute dtype on the compute device. Parameters are permanent views into it.
  When the chunk is evicted the payload's storage is resized to zero bytes (the views stay valid objects, their data
  is gone) and it is gathered again before the next use. This is the rCache block of the paper; with equal-size
  public chunks the CUDA caching allocator hands the same blocks back, so no separate pool is kept.
* the **master shard**, this rank's ``1/world`` of the chunk in fp32, on the device or on the CPU (the per-chunk
  offload decision). It is the source of truth: the payload is always re-gathered from it.
* the **gradient shard**, fp32, beside the master; the reduce-scattered gradients are added into it, so gradient
  accumulation over micro-batches works without a second buffer.

Gradients arrive one parameter at a time; each is written into the parameter's own slot of the payload (its value is
no longer needed once its gradient exists). When every trainable parameter of the chunk has arrived the payload,
now holding gradients, is reduce-scattered into the gradient shard and released.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn

from .budget import DeviceMemoryBudget
from .collectives import all_gather_shards, reduce_scatter_shards

__all__ = ["Chunk", "ChunkKind", "ParamSlot"]


class ChunkKind(str, Enum):
    """How a chunk is kept on the device and across ranks."""

    PUBLIC = "public"  # equal-size, sharded, gathered on demand into the cache, evictable
    REPLICATED = "replicated"  # multi-used or opted-out parameters: sharded master, payload always gathered
    LOCAL = "local"  # expert-parallel parameters: one per rank, never communicated


@dataclass
class ParamSlot:
    """Where one parameter lives inside its chunk."""

    name: str
    param: nn.Parameter
    offset: int
    numel: int
    shape: torch.Size


class Chunk:
    """One packed chunk. See the module docstring for the life cycle.

    Args:
        index: Position of the chunk in the plan (also its id in the access order).
        slots: The parameters it holds, with their offsets (already laid out by the packer).
        numel: Padded size in elements, a multiple of ``world_size``.
        kind: :class:`ChunkKind`.
        compute_device / compute_dtype: Where and in which dtype the payload is gathered.
        master_on_device: Keep the fp32 master, gradient and optimizer shards on the compute device (booked in the
            budget) rather than on the CPU. In CPU mode both are host memory; only the booking differs.
        group: Process group the chunk is sharded over (``None``: not sharded).
        budget: Ledger that books the payload and any device-resident shard.
    """

    def __init__(
        self,
        index: int,
        slots: list[ParamSlot],
        numel: int,
        kind: ChunkKind,
        compute_device: torch.device,
        compute_dtype: torch.dtype,
        master_on_device: bool,
        group,
        budget: DeviceMemoryBudget,
        optimizer_state_factor: int,
    ) -> None:
        self.index = index
        self.slots = slots
        self.kind = kind
        self.compute_device = compute_device
        self.compute_dtype = compute_dtype
        self.master_device = compute_device if master_on_device else torch.device("cpu")
        self.group = group if kind is not ChunkKind.LOCAL else None
        self.world_size = torch.distributed.get_world_size(self.group) if self.group is not None else 1
        self.rank = torch.distributed.get_rank(self.group) if self.group is not None else 0
        if numel % self.world_size:
            raise ValueError(f"chunk {index}: size {numel} is not a multiple of the world size {self.world_size}")
        self.numel = numel
        self.shard_numel = numel // self.world_size
        self.shard_begin = self.rank * self.shard_numel
        self.budget = budget
        self.payload_bytes = numel * torch.empty((), dtype=compute_dtype).element_size()
        # master + gradient shard + optimizer states, all fp32, booked when they live on the compute device
        self.shard_state_bytes = self.shard_numel * 4 * (2 + optimizer_state_factor)
        self.on_device_shards = master_on_device

        full = torch.zeros(numel, dtype=torch.float32)
        for slot in slots:
            full[slot.offset : slot.offset + slot.numel] = slot.param.detach().reshape(-1).to("cpu", torch.float32)
        if self.on_device_shards:
            budget.reserve(self.shard_state_bytes, f"fp32 master, gradient and optimizer shards of chunk {index}")
        self.master = full[self.shard_begin : self.shard_begin + self.shard_numel].clone().to(self.master_device)
        self.grad = torch.zeros_like(self.master)
        if kind is not ChunkKind.PUBLIC:
            budget.reserve(self.payload_bytes, f"payload of resident chunk {index}")
        self.payload = torch.empty(numel, dtype=compute_dtype, device=compute_device)
        for slot in slots:  # views first: slicing needs the storage to exist
            slot.param.data = self.payload[slot.offset : slot.offset + slot.numel].view(slot.shape)
        if kind is ChunkKind.PUBLIC:
            self.payload.untyped_storage().resize_(0)
        self.gathered = False  # payload storage allocated and holding current parameter values
        self.pins = 0  # forward calls currently using the chunk
        self.held_for_backward = False  # touched in this backward, kept until its gradients are reduced
        self.grad_arrived = [False] * len(slots)
        self.n_arrived = 0
        self.gathers = 0  # statistics: how often the payload was gathered

    # ------------------------------------------------------------------ payload
    @property
    def resident(self) -> bool:
        return self.kind is not ChunkKind.PUBLIC

    @property
    def evictable(self) -> bool:
        return self.gathered and not self.resident and self.pins == 0 and not self.held_for_backward

    def storage_ptr(self) -> int:
        return self.payload.untyped_storage().data_ptr()

    def gather(self) -> None:
        """Allocate the payload (booked in the budget) and fill it from every rank's master shard."""
        if self.gathered:
            return
        if not self.resident:
            self.budget.reserve(self.payload_bytes, f"cache block for chunk {self.index}")
            self.payload.untyped_storage().resize_(self.payload_bytes)
        source = self.master.to(self.compute_device, self.compute_dtype, non_blocking=True)
        if self.group is not None and self.world_size > 1:
            all_gather_shards(self.payload, source, self.group)
        else:
            self.payload.copy_(source)
        self.gathered = True
        self.gathers += 1

    def release(self) -> None:
        """Free the payload's storage (resident chunks keep it and are only marked stale)."""
        if not self.resident and self.payload.untyped_storage().nbytes():
            self.payload.untyped_storage().resize_(0)
            self.budget.release(self.payload_bytes)
        self.gathered = False

    # ------------------------------------------------------------------ gradients
    @property
    def trainable_count(self) -> int:
        return len(self.slots)

    def accept_grad(self, slot_index: int, grad: Tensor) -> bool:
        """Write one parameter's gradient into its payload slot; return True when the chunk is complete."""
        slot = self.slots[slot_index]
        if self.grad_arrived[slot_index]:
            raise RuntimeError(f"parameter {slot.name!r} received two gradients in one backward pass")
        self.payload[slot.offset : slot.offset + slot.numel].copy_(grad.reshape(-1))
        self.grad_arrived[slot_index] = True
        self.n_arrived += 1
        return self.n_arrived == self.trainable_count

    def reduce(self) -> None:
        """Reduce-scatter the gradients held in the payload and add this rank's slice into the gradient shard.

        Slots whose parameter got no gradient in this pass are zeroed first; their parameters are skipped by the
        optimizer (see :meth:`~.optimizer.ElixirOptimizer.step`), exactly as plain PyTorch skips ``grad is None``.
        """
        for i, slot in enumerate(self.slots):
            if not self.grad_arrived[i]:
                self.payload[slot.offset : slot.offset + slot.numel].zero_()
        padding_start = self.slots[-1].offset + self.slots[-1].numel if self.slots else 0
        self.payload[padding_start:].zero_()
        if self.group is not None and self.world_size > 1:
            self.payload.div_(self.world_size)
            shard = reduce_scatter_shards(self.payload, self.group)
        else:
            shard = self.payload
        self.grad.add_(shard.to(self.master_device, torch.float32))
        self.held_for_backward = False
        self.n_arrived = 0
        self.grad_arrived = [False] * len(self.slots)
        self.release()  # the payload now holds gradients, not parameters

    # ------------------------------------------------------------------ views used by the optimizer
    def shard_range(self, slot: ParamSlot) -> tuple[int, int] | None:
        """The part of ``slot`` inside this rank's shard, as ``(begin, end)`` offsets into the shard, or None."""
        begin = max(slot.offset, self.shard_begin)
        end = min(slot.offset + slot.numel, self.shard_begin + self.shard_numel)
        if begin >= end:
            return None
        return begin - self.shard_begin, end - self.shard_begin

    def full_master(self) -> Tensor:
        """The whole chunk's fp32 values on the CPU (a collective when sharded)."""
        if self.group is None or self.world_size == 1:
            return self.master.detach().to("cpu", torch.float32).clone()
        full = torch.empty(self.numel, dtype=torch.float32, device=self.master.device)
        all_gather_shards(full, self.master.detach(), self.group)
        return full.cpu()

    def load_full(self, full: Tensor) -> None:
        """Overwrite the master shard from a whole-chunk fp32 tensor (same on every rank); marks the payload stale."""
        self.master.copy_(full[self.shard_begin : self.shard_begin + self.shard_numel].to(self.master.device))
        self.release()

    def __repr__(self) -> str:
        return (
            f"Chunk({self.index}, kind={self.kind.value}, params={len(self.slots)}, numel={self.numel}, "
            f"master={self.master_device.type}, gathered={self.gathered})"
        )
