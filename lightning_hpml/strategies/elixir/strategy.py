"""``ElixirStrategy``: train models larger than device memory with chunked, cached, offloaded parameters."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.fabric.plugins import CheckpointIO, ClusterEnvironment
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.fabric.utilities.distributed import _distributed_is_initialized
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.distributed.constants import default_pg_timeout
from torch.distributed.utils import _sync_params_and_buffers
from torch.optim import Optimizer

from .budget import DeviceMemoryBudget
from .hardware import HardwareProfile, measure_hardware
from .optimizer import ShardedParamGroups
from .packing import POLICIES, assign_kinds, trainable_parameters
from .plan import OFFLOAD_CHOICES, ElixirPlan, search_plan
from .precision import ElixirPrecision
from .profiler import StepProfile, profile_forward
from .runtime import ChunkRuntime

__all__ = ["ElixirStrategy", "optimizer_state_factor"]

_CHECKPOINT_KEY = "elixir"
_BUFFER_BUCKET_BYTES = 250 * 1024 * 1024


def optimizer_state_factor(optimizer: Optimizer | None) -> int:
    """fp32 state elements per parameter element the optimizer keeps (for the memory plan)."""
    if optimizer is None:
        return 2
    if isinstance(optimizer, torch.optim.SGD):
        return 1 if any(g.get("momentum", 0) for g in optimizer.param_groups) else 0
    if isinstance(optimizer, (torch.optim.Adagrad, torch.optim.RMSprop)):
        return 1 if isinstance(optimizer, torch.optim.Adagrad) else 3
    return 2  # Adam, AdamW, Adamax, NAdam, RAdam: two moments


class ElixirStrategy(DDPStrategy):
    """Elixir (Huang, Fang, Liu, Li, You; arXiv 2212.05339; reference code: branch ``feature/elixir`` of
    https://github.com/hpcaitech/ColossalAI, folder ``colossalai/elixir``) as a Lightning strategy.

    Trainable parameters are packed into fixed-size chunks in first-use order, sharded across ranks with fp32 master
    shards, gathered on demand into a cache of equal-size device blocks (evicting the chunk used furthest in the
    future), and their gradients are reduce-scattered chunk by chunk during backward. Each chunk's fp32 master,
    gradient and optimizer state stays on the device or goes to the CPU, as the plan search decides from a profiled
    step, the budget and measured speeds; the user's (element-wise) optimizer then updates CPU shards on the CPU and
    device shards on the device. Tied parameters stay gathered. Works on CUDA (NCCL) and on CPU (Gloo), where the
    budget is enforced by the chunk ledger.

    Args:
        device_memory_limit: Device bytes the chunks (plus the profiled activations) may use: an int in bytes, a
            float in (0, 1] as a fraction of the device's memory (host RAM on CPU), or ``None`` for no limit.
        chunk_size: Fix the public chunk size in elements instead of searching it.
        cache_blocks: Fix the number of cache blocks instead of searching it.
        offload: ``"auto"`` (searched), ``"cpu"`` (all fp32 shards on the CPU) or ``"device"``.
        policy: Module-name patterns mapped to ``"replicated"`` (keep gathered), ``"local"`` (this rank's own
            copy, e.g. expert-parallel MoE experts) or ``"chunked"``; see :func:`~.packing.assign_kinds`.
        profile: Profile one training step's forward (first training batch, or ``example_batch``) to get the access
            order and activation size; without it parameters are packed in registration order.
        example_batch: Batch for the profiling step (default: the first batch of the training dataloader).
        hardware: Speeds to plan with (:class:`~.hardware.HardwareProfile` fields) instead of measuring them.
        print_plan: Print the plan table on rank 0.
        broadcast_buffers: Broadcast rank 0's buffers (e.g. BatchNorm statistics) before each training step, as
            ``DistributedDataParallel`` does by default.
        log_stats: Log ``elixir/gathers``, ``elixir/evictions`` (per optimizer step) and ``elixir/peak_device_mib``
            (booked chunk memory, the number the budget bounds).

    The remaining arguments are :class:`~lightning.pytorch.strategies.DDPStrategy`'s (process launch and groups).
    Differences from the paper's system are listed in the README's Elixir section.
    """

    strategy_name = "elixir"

    def __init__(
        self,
        device_memory_limit: float | None = None,
        chunk_size: int | None = None,
        cache_blocks: int | None = None,
        offload: Literal["auto", "cpu", "device"] = "auto",
        policy: dict[str, str] | None = None,
        profile: bool = True,
        example_batch: Any = None,
        hardware: dict[str, float] | None = None,
        print_plan: bool = True,
        broadcast_buffers: bool = True,
        log_stats: bool = True,
        accelerator: pl.accelerators.Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        start_method: Literal["popen", "spawn", "fork", "forkserver"] = "popen",
    ) -> None:
        if isinstance(device_memory_limit, float) and device_memory_limit > 1.0 and device_memory_limit.is_integer():
            device_memory_limit = int(device_memory_limit)  # bytes that a config parser turned into a float
        if isinstance(device_memory_limit, float) and not 0.0 < device_memory_limit <= 1.0:
            raise ValueError(
                f"a float `device_memory_limit` is a fraction in (0, 1] (bytes are a whole number), got {device_memory_limit}"
            )
        if isinstance(device_memory_limit, int) and device_memory_limit <= 0:
            raise ValueError(f"`device_memory_limit` must be positive bytes, got {device_memory_limit}")
        if offload not in OFFLOAD_CHOICES:
            raise ValueError(f"`offload` must be one of {OFFLOAD_CHOICES}, got {offload!r}")
        for pattern, value in (policy or {}).items():
            if value not in POLICIES:
                raise ValueError(f"policy[{pattern!r}] must be one of {POLICIES}, got {value!r}")
        for name, value in (("chunk_size", chunk_size), ("cache_blocks", cache_blocks)):
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value}")
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
        )
        self.device_memory_limit = device_memory_limit
        self.chunk_size = chunk_size
        self.cache_blocks = cache_blocks
        self.offload = offload
        self.policy = dict(policy or {})
        self.profile_step = profile
        self.example_batch = example_batch
        self.hardware = HardwareProfile.from_dict(hardware) if hardware else None
        self.print_plan = print_plan
        self.broadcast_buffers = broadcast_buffers
        self.log_stats = log_stats
        self._logged = {"gathers": 0, "evictions": 0}
        self.runtime: ChunkRuntime | None = None
        self.shards: ShardedParamGroups | None = None
        self.budget: DeviceMemoryBudget | None = None
        self.plan: ElixirPlan | None = None
        self.stats: dict[str, int] = {}  # gathers, evictions and peak booked bytes of the last run

    @classmethod
    def register_strategies(cls, strategy_registry) -> None:
        strategy_registry.register(
            "elixir", cls, description="Elixir: chunked parameters with a device cache, searched CPU offload"
        )
        strategy_registry.register(
            "elixir_cpu_offload",
            cls,
            description="Elixir with every fp32 shard and optimizer state on the CPU",
            offload="cpu",
        )

    # ------------------------------------------------------------------ precision
    @property
    def precision_plugin(self) -> ElixirPrecision:
        if self._precision_plugin is None:
            self._precision_plugin = ElixirPrecision()
        return self._precision_plugin  # type: ignore[return-value]

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        self._precision_plugin = None if plugin is None else ElixirPrecision.from_plugin(plugin)

    # ------------------------------------------------------------------ set-up
    @property
    def _group(self):
        return dist.group.WORLD if _distributed_is_initialized() else None

    def model_to_device(self) -> None:
        """Chunks own parameter placement; the runtime moves buffers and frozen parameters."""

    def setup(self, trainer: pl.Trainer) -> None:
        assert self.accelerator is not None
        self.accelerator.setup(trainer)
        model = self.lightning_module
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting:
            self.setup_optimizers(trainer)
            if len(self.optimizers) != 1:
                raise ValueError(f"ElixirStrategy supports exactly one optimizer, got {len(self.optimizers)}")
        if self._group is not None and self.world_size > 1:
            self._broadcast_initial_state(model)
        precision = self.precision_plugin
        precision.device_type = self.root_device.type
        state_factor = optimizer_state_factor(self.optimizers[0] if fitting else None)
        self.budget = DeviceMemoryBudget(self._budget_bytes())
        self.plan = self._stored_plan(trainer) or self._search_plan(trainer, model, fitting, state_factor)
        self.runtime = ChunkRuntime(
            model, self.plan, self.root_device, precision.compute_dtype, self._group, self.budget, state_factor
        )
        if fitting:
            self.shards = ShardedParamGroups(self.optimizers[0], self.runtime)
        precision.runtime, precision.shards, precision.group = self.runtime, self.shards, self._group
        self.setup_precision_plugin()
        if self.print_plan and self.is_global_zero:
            self.plan.print(state_factor, self.world_size)

    def _budget_bytes(self) -> int | None:
        limit = self.device_memory_limit
        if limit is None or isinstance(limit, int):
            return limit
        if self.root_device.type == "cuda":
            total = torch.cuda.get_device_properties(self.root_device).total_memory
        else:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(limit * total)

    def _broadcast_initial_state(self, model: torch.nn.Module) -> None:
        """Every rank starts from rank 0's weights and buffers, as DistributedDataParallel does."""
        device = self.root_device if dist.get_backend() == dist.Backend.NCCL else torch.device("cpu")
        for tensor in [*model.parameters(), *model.buffers()]:
            staged = tensor.data.to(device)
            dist.broadcast(staged, src=0)
            tensor.data.copy_(staged)

    def _stored_plan(self, trainer: pl.Trainer) -> ElixirPlan | None:
        """When resuming, the checkpoint's plan: its optimizer shards only fit that layout.

        A checkpoint from another number of processes gets a new plan (its full weights load into any layout;
        resuming its optimizer shards is refused in :meth:`load_optimizer_state_dict`).
        """
        loaded = getattr(trainer._checkpoint_connector, "_loaded_checkpoint", None) or {}
        stored = loaded.get(_CHECKPOINT_KEY)
        if not stored or stored.get("world_size") != self.world_size:
            return None
        return ElixirPlan.from_dict(stored["plan"])

    def _search_plan(self, trainer: pl.Trainer, model: pl.LightningModule, fitting: bool, state_factor: int):
        params = trainable_parameters(model)
        profile = StepProfile()
        batch = self._profiling_batch(trainer) if fitting and self.profile_step else None
        if batch is not None:
            batch = move_data_to_device(batch, torch.device("cpu"))

            def run_forward():
                with self.precision_plugin.forward_context_on("cpu"):
                    return model.training_step(batch, 0)

            profile = profile_forward(model, run_forward)
        hardware = self.hardware or measure_hardware(self.root_device)
        plan = search_plan(
            profile.first_use_order(list(params)),
            {name: p.numel() for name, p in params.items()},
            assign_kinds(model, self.policy),
            profile,
            hardware,
            world_size=self.world_size if self._group is not None else 1,
            compute_bytes_per_elem=torch.empty((), dtype=self.precision_plugin.compute_dtype).element_size(),
            state_factor=state_factor,
            budget_bytes=self.budget.limit_bytes if self.budget else None,
            chunk_numel=self.chunk_size,
            cache_blocks=self.cache_blocks,
            offload=self.offload,
            reserve_activations=self.root_device.type == "cuda",
        )
        if self._group is not None and self.world_size > 1:
            plan = ElixirPlan.from_dict(self.broadcast(plan.to_dict(), src=0))  # measured speeds differ per rank
        return plan

    def _profiling_batch(self, trainer: pl.Trainer) -> Any:
        if self.example_batch is not None:
            return self.example_batch
        try:
            loader = trainer.fit_loop._data_source.dataloader()
            with torch.random.fork_rng(devices=[]):
                return next(iter(loader))
        except (AttributeError, StopIteration, TypeError) as error:
            rank_zero_info(f"Elixir: no batch to profile ({error}); packing parameters in registration order")
            return None

    # ------------------------------------------------------------------ steps
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        if self.broadcast_buffers and self._group is not None and self.world_size > 1:
            buffers = list(self.lightning_module.buffers())
            if buffers:
                _sync_params_and_buffers(self._group, buffers, _BUFFER_BUCKET_BYTES, src=0)
        with self.runtime.step_context(training=True):
            return super().training_step(*args, **kwargs)

    def optimizer_step(
        self, optimizer: Optimizer, closure: Callable[[], Any], model: pl.LightningModule | None = None, **kwargs: Any
    ) -> Any:
        output = super().optimizer_step(optimizer, closure, model, **kwargs)
        if self.log_stats and self.runtime is not None:
            stats = self.runtime.stats
            metrics = {f"elixir/{key}": float(stats[key] - self._logged[key]) for key in self._logged}
            metrics["elixir/peak_device_mib"] = self.budget.peak_bytes / 2**20
            self._logged = {key: stats[key] for key in self._logged}
            self.lightning_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)
        return output

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.runtime.step_context(training=False):
            return super().validation_step(*args, **kwargs)

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.runtime.step_context(training=False):
            return super().test_step(*args, **kwargs)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.runtime.step_context(training=False):
            return super().predict_step(*args, **kwargs)

    # ------------------------------------------------------------------ checkpoints
    def lightning_module_state_dict(self) -> dict[str, Any]:
        """Full fp32 weights (gathered from every rank's master shards) plus buffers: loadable without Elixir."""
        state = self.lightning_module.state_dict()
        if self.runtime is not None:
            state.update({k: v for k, v in self.runtime.full_state_dict().items() if k in state})
        return state

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH, storage_options: Any | None = None) -> None:
        """Add the plan and every rank's optimizer shards (a collective: all ranks call this)."""
        if self.runtime is not None and "optimizer_states" in checkpoint:
            shards = checkpoint["optimizer_states"]
            if self._group is not None and self.world_size > 1:
                gathered: list | None = [None] * self.world_size if self.is_global_zero else None
                dist.gather_object(shards, gathered, dst=0)
            else:
                gathered = [shards]
            checkpoint[_CHECKPOINT_KEY] = {
                "plan": self.plan.to_dict(),
                "world_size": self.world_size,
                "optimizer_shards": gathered,
            }
        elif self.plan is not None:
            checkpoint[_CHECKPOINT_KEY] = {"plan": self.plan.to_dict(), "world_size": self.world_size}
        super().save_checkpoint(checkpoint, filepath, storage_options=storage_options)

    def load_optimizer_state_dict(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(_CHECKPOINT_KEY)
        if not stored or "optimizer_shards" not in stored:
            raise KeyError(
                "this checkpoint has no Elixir optimizer shards (it was not saved by ElixirStrategy while fitting); "
                "load its weights with `LightningModule.load_state_dict` and start a new fit instead"
            )
        if stored["world_size"] != self.world_size:
            raise ValueError(
                f"the checkpoint's optimizer shards were saved by {stored['world_size']} processes; resuming needs "
                f"the same number (this run has {self.world_size})"
            )
        if ElixirPlan.from_dict(stored["plan"]).layout() != self.plan.layout():
            raise ValueError("the checkpoint's chunk layout differs from this run's plan; cannot map optimizer shards")
        for optimizer, state in zip(self.optimizers, stored["optimizer_shards"][self.global_rank]):
            optimizer.load_state_dict(state)

    def teardown(self) -> None:
        """Give the module back as plain fp32 CPU parameters, so it can be used (or set up again) without Elixir."""
        if self.runtime is not None:
            self.stats = {**self.runtime.stats, "peak_bytes": self.budget.peak_bytes}
            self._logged = {"gathers": 0, "evictions": 0}
            self.runtime.remove()
            self.runtime = None
            self.shards = None
        super().teardown()
