"""The chunk runtime: gathers chunks before use, evicts by furthest next use, reduces gradients as they complete.

Where Elixir hooks every torch function touching a parameter (``__torch_function__`` on a parameter subclass plus a
copy of each parameter into a scratch buffer so autograd's saved copy survives eviction), this runtime uses three
standard PyTorch hooks:

* **forward pre/post hooks** on every module that owns trainable parameters: gather its chunks and pin them while
  the module runs (a parent stays pinned while its children run, since it may use its own parameters afterwards);
* a **saved-tensor hook**: when autograd saves a tensor that lives in a chunk's payload (a parameter or a view of
  one), the chunk is remembered with it; when backward unpacks it, the chunk is gathered again if it was evicted,
  and held until its gradients are reduced. Parameters are permanent views of the payload, whose storage is resized
  to zero on eviction and back on gather, so nothing is copied per operation;
* a **post-accumulate-grad hook** per parameter: the gradient is written into the parameter's slot of the payload
  and ``.grad`` is dropped; a chunk whose parameters all have gradients is reduce-scattered at once, in the middle of
  backward, as Elixir does.

Eviction picks, among gathered chunks nobody is using, the one whose next use in the profiled access order is
furthest away (Belady), falling back to least recently used once the step leaves the profiled order. Every rank
makes the same choices, so gathers stay matched across ranks; this needs the same computation graph on every rank.
"""

from __future__ import annotations

import bisect
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn

from .budget import DeviceMemoryBudget, ElixirMemoryError
from .chunk import Chunk, ChunkKind, ParamSlot
from .packing import trainable_parameters
from .plan import ElixirPlan

__all__ = ["ChunkRuntime"]


class _ChunkRef:
    """What a saved-tensor hook stores for a tensor that lives in a chunk."""

    __slots__ = ("chunk", "tensor")

    def __init__(self, chunk: Chunk, tensor: Tensor) -> None:
        self.chunk = chunk
        self.tensor = tensor


class ChunkRuntime:
    """Turns ``module``'s trainable parameters into chunks laid out by ``plan`` and serves them during steps.

    Args:
        module: The model (usually the LightningModule). Its parameters become views into chunk payloads.
        plan: Layout, cache size and offload choices (:func:`~.plan.search_plan`).
        compute_device / compute_dtype: Where and in which dtype forward and backward run.
        group: Process group chunks are sharded over (``None``: one process).
        budget: Ledger of device memory the chunks may use.
        state_factor: fp32 optimizer-state elements per parameter element (2 for Adam), for the ledger.
    """

    def __init__(
        self,
        module: nn.Module,
        plan: ElixirPlan,
        compute_device: torch.device,
        compute_dtype: torch.dtype,
        group,
        budget: DeviceMemoryBudget,
        state_factor: int,
    ) -> None:
        self.module = module
        self.plan = plan
        self.compute_device = compute_device
        self.compute_dtype = compute_dtype
        self.budget = budget
        params = trainable_parameters(module)
        planned = [name for spec in plan.chunks for name in spec.param_names]
        if sorted(planned) != sorted(params) or len(set(planned)) != len(planned):
            missing = sorted(set(params) - set(planned))
            unknown = sorted(set(planned) - set(params))
            raise ValueError(
                f"the Elixir plan does not match the model's trainable parameters (missing from the plan: {missing}, "
                f"not in the model: {unknown}); was the plan made for another model?"
            )
        self.aliases: dict[int, list[str]] = defaultdict(list)
        for name, p in module.named_parameters(remove_duplicate=False):
            self.aliases[id(p)].append(name)

        self.chunks: list[Chunk] = []
        self.slot_of: dict[int, tuple[Chunk, int]] = {}
        for index, spec in enumerate(plan.chunks):
            slots, offset = [], 0
            for name in spec.param_names:
                p = params[name]
                slots.append(ParamSlot(name, p, offset, p.numel(), p.shape))
                offset += p.numel()
            chunk = Chunk(
                index,
                slots,
                spec.numel,
                spec.kind,
                compute_device,
                compute_dtype,
                spec.master_on_device,
                group,
                budget,
                state_factor,
            )
            self.chunks.append(chunk)
            for i, slot in enumerate(slots):
                self.slot_of[id(slot.param)] = (chunk, i)
        self._move_untracked_state()

        self._positions: dict[int, list[int]] = defaultdict(list)
        for position, index in enumerate(plan.access):
            self._positions[index].append(position)
        self._clock = 0
        self._last_used: dict[int, int] = {}
        self._by_storage: dict[int, Chunk] = {}
        self.had_grad: dict[int, bool] = {id(s.param): False for c in self.chunks for s in c.slots}
        self.stats = {"gathers": 0, "evictions": 0, "resident_refreshes": 0}  # gathers: of public (cached) chunks
        self._handles = []
        for sub in module.modules():
            own = list(
                dict.fromkeys(self.slot_of[id(p)][0] for p in sub.parameters(recurse=False) if id(p) in self.slot_of)
            )
            if own:
                self._handles.append(sub.register_forward_pre_hook(self._pre_forward_hook(own)))
                self._handles.append(sub.register_forward_hook(self._post_forward_hook(own), always_call=True))
        for chunk in self.chunks:
            for slot in chunk.slots:
                self._handles.append(slot.param.register_post_accumulate_grad_hook(self._on_grad))

    # ------------------------------------------------------------------ set-up helpers
    def _move_untracked_state(self) -> None:
        """Buffers and frozen parameters are not chunked: they simply live on the compute device.

        Floating buffers take the compute dtype, as in the reference code: BatchNorm needs its running statistics in
        the dtype of its (chunked, bf16/fp16) weight. :meth:`remove` gives them their dtype back.
        """
        self._buffer_dtypes: dict[tuple[int, str], torch.dtype] = {}
        for sub in self.module.modules():
            for key, buf in sub._buffers.items():
                if buf is None:
                    continue
                dtype = self.compute_dtype if buf.is_floating_point() else buf.dtype
                self._buffer_dtypes[(id(sub), key)] = buf.dtype
                sub._buffers[key] = buf.to(self.compute_device, dtype)
            for p in sub.parameters(recurse=False):
                if id(p) not in self.slot_of:
                    p.data = p.data.to(self.compute_device)

    # ------------------------------------------------------------------ fetching and eviction
    def fetch(self, chunk: Chunk, tick: bool = True) -> None:
        """Make ``chunk``'s payload hold current parameter values on the device, evicting others if needed.

        ``tick`` advances the access clock; backward ticks only on a chunk's first touch, as the profile counts it.
        """
        if tick and not chunk.resident:
            self._clock += 1
        self._last_used[chunk.index] = self._clock
        if chunk.gathered:
            return
        if not chunk.resident:
            while not self.budget.can_reserve(chunk.payload_bytes) or self._cached() >= self.plan.cache_blocks:
                victim = self._choose_victim()
                if victim is None:
                    raise ElixirMemoryError(
                        f"cannot gather chunk {chunk.index}: all {self._cached()} cached chunks are in use "
                        f"(plan has {self.plan.cache_blocks} cache blocks, budget {self.budget}). Raise "
                        "`device_memory_limit` or `cache_blocks`."
                    )
                self._evict(victim)
        old = chunk.storage_ptr()
        chunk.gather()
        self._by_storage.pop(old, None)
        self._by_storage[chunk.storage_ptr()] = chunk
        self.stats["resident_refreshes" if chunk.resident else "gathers"] += 1

    def _cached(self) -> int:
        return sum(1 for c in self.chunks if c.gathered and not c.resident)

    def _evict(self, chunk: Chunk) -> None:
        self._by_storage.pop(chunk.storage_ptr(), None)
        chunk.release()
        self.stats["evictions"] += 1

    def _choose_victim(self) -> Chunk | None:
        candidates = [c for c in self.chunks if c.evictable]
        if not candidates:
            return None

        def next_use(chunk: Chunk) -> float:
            positions = self._positions.get(chunk.index, [])
            i = bisect.bisect_right(positions, self._clock - 1)
            return positions[i] if i < len(positions) else float("inf")

        if self._clock <= len(self.plan.access):
            return max(candidates, key=lambda c: (next_use(c), -self._last_used.get(c.index, 0)))
        return min(candidates, key=lambda c: self._last_used.get(c.index, 0))

    # ------------------------------------------------------------------ hooks
    def _pre_forward_hook(self, chunks: list[Chunk]):
        def hook(module, args):
            for chunk in chunks:
                chunk.pins += 1  # pin first, so gathering the next one cannot evict this one
                self.fetch(chunk)

        return hook

    def _post_forward_hook(self, chunks: list[Chunk]):
        def hook(module, args, output):
            for chunk in chunks:
                chunk.pins = max(0, chunk.pins - 1)

        return hook

    def _pack(self, tensor: Tensor):
        if tensor.layout is not torch.strided or tensor.device != self.compute_device:
            return tensor
        chunk = self._by_storage.get(tensor.untyped_storage().data_ptr())
        return tensor if chunk is None else _ChunkRef(chunk, tensor)

    def _hold_for_backward(self, chunk: Chunk) -> None:
        first_touch = not chunk.held_for_backward
        chunk.held_for_backward = True
        self.fetch(chunk, tick=first_touch)

    def _unpack(self, packed):
        if isinstance(packed, _ChunkRef):
            self._hold_for_backward(packed.chunk)
            return packed.tensor
        return packed

    def _on_grad(self, param: Tensor) -> None:
        chunk, index = self.slot_of[id(param)]
        grad = param.grad
        param.grad = None
        self._hold_for_backward(chunk)
        self.had_grad[id(param)] = True
        if chunk.accept_grad(index, grad):
            self._by_storage.pop(chunk.storage_ptr(), None)
            chunk.reduce()

    # ------------------------------------------------------------------ step boundaries
    @contextmanager
    def step_context(self, training: bool) -> Iterator[None]:
        """Wrap one training/evaluation step: restart the access clock, track saved tensors when training."""
        self._clock = 0
        for chunk in self.chunks:
            chunk.pins = 0
        hooks = (
            torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
            if training and torch.is_grad_enabled()
            else nullcontext()
        )
        with hooks:
            yield

    def finish_backward(self) -> None:
        """After ``loss.backward()``: reduce chunks some of whose parameters got no gradient, release holds."""
        incomplete = [c for c in self.chunks if c.n_arrived]
        if incomplete:
            names = [s.name for c in incomplete for i, s in enumerate(c.slots) if not c.grad_arrived[i]]
            warnings.warn(
                f"Elixir: {len(names)} parameters got no gradient in this backward pass (e.g. {names[:3]}); they are "
                "left out of the optimizer step like plain PyTorch leaves parameters whose .grad is None",
                stacklevel=2,
            )
        for chunk in incomplete:
            self._by_storage.pop(chunk.storage_ptr(), None)
            chunk.reduce()
        for chunk in self.chunks:
            chunk.held_for_backward = False

    def after_optimizer_step(self) -> None:
        """Masters changed: every gathered payload is stale; gradient shards start from zero."""
        for chunk in self.chunks:
            if chunk.gathered:
                self._by_storage.pop(chunk.storage_ptr(), None)
                chunk.release()
            chunk.grad.zero_()
        for key in self.had_grad:
            self.had_grad[key] = False

    def zero_grad(self) -> None:
        for chunk in self.chunks:
            chunk.grad.zero_()
        for key in self.had_grad:
            self.had_grad[key] = False

    # ------------------------------------------------------------------ full weights
    def full_state_dict(self) -> dict[str, Tensor]:
        """Every chunked parameter (under all its names) as a full fp32 CPU tensor; a collective when sharded."""
        state = {}
        for chunk in self.chunks:
            full = chunk.full_master()
            for slot in chunk.slots:
                value = full[slot.offset : slot.offset + slot.numel].view(slot.shape).clone()
                for name in self.aliases[id(slot.param)]:
                    state[name] = value
        return state

    def load_full_state_dict(self, state: dict[str, Tensor]) -> None:
        """Overwrite the masters from full tensors keyed by parameter name (any alias)."""
        for chunk in self.chunks:
            full = torch.zeros(chunk.numel, dtype=torch.float32)
            for slot in chunk.slots:
                name = next((n for n in self.aliases[id(slot.param)] if n in state), None)
                if name is None:
                    raise KeyError(f"state dict has no entry for parameter {slot.name!r}")
                value = state[name]
                if tuple(value.shape) != tuple(slot.shape):
                    raise ValueError(
                        f"{name}: shape {tuple(value.shape)} in the state dict, model has {tuple(slot.shape)}"
                    )
                full[slot.offset : slot.offset + slot.numel] = value.reshape(-1).to("cpu", torch.float32)
            self._by_storage.pop(chunk.storage_ptr(), None)
            chunk.load_full(full)

    def remove(self) -> None:
        """Undo the chunking: parameters become plain fp32 tensors on the CPU again, hooks and budget are released."""
        state = self.full_state_dict()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for chunk in self.chunks:
            for slot in chunk.slots:
                slot.param.data = state[slot.name]
            chunk.release()
            if chunk.resident:
                chunk.payload.untyped_storage().resize_(0)
                self.budget.release(chunk.payload_bytes)
            if chunk.on_device_shards:
                self.budget.release(chunk.shard_state_bytes)
        self._by_storage.clear()
        for sub in self.module.modules():
            for key, buf in sub._buffers.items():
                if buf is not None and (id(sub), key) in self._buffer_dtypes:
                    sub._buffers[key] = buf.to(dtype=self._buffer_dtypes[(id(sub), key)])

    def chunk_kinds(self) -> dict[str, int]:
        counts = {kind.value: 0 for kind in ChunkKind}
        for chunk in self.chunks:
            counts[chunk.kind.value] += 1
        return counts
