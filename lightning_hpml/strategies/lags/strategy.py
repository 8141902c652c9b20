"""``LAGSStrategy``: Lightning's DDP process management with layer-wise adaptive sparse gradient exchange."""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.fabric.plugins import CheckpointIO, ClusterEnvironment
from lightning.fabric.utilities.distributed import _distributed_is_initialized
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor
from torch.distributed.constants import default_pg_timeout
from torch.distributed.distributed_c10d import _get_default_group
from torch.distributed.utils import _sync_params_and_buffers
from torch.optim import Optimizer

from .cost_model import DEFAULT_PROBE_BYTES
from .reducer import LAGSCommunicationError, LayerwiseSparseReducer, check_settings

__all__ = ["LAGSStrategy"]

_CHECKPOINT_KEY = "lags"
_BUFFER_BUCKET_BYTES = 250 * 1024 * 1024


def _destroy_gloo_group_at_exit() -> None:
    """Destroy the default Gloo process group while Python is still alive.

    The exchanges are asynchronous Gloo work whose tensors Python owns; a Gloo worker thread may still hold the last
    of them when the process ends, and releasing it during interpreter finalisation aborts the process ("terminate
    called without an active exception"; pytorch/pytorch#190489, PR #179291). Destroying a Gloo group is local (no
    collective), so it is safe at exit on every rank. NCCL groups are left to the user, as Lightning does.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo":
        dist.destroy_process_group()


class LAGSStrategy(DDPStrategy):
    """Data-parallel training that sends only the largest gradient entries of each layer, overlapped with backward.

    LAGS-SGD (Shi et al., ECAI 2020, arXiv 1911.08727; official code https://github.com/HKBU-HPML/OMGS-SGD). Process
    launch, ranks, ``barrier``/``broadcast``/``reduce`` and the distributed sampler are Lightning's DDP machinery;
    instead of wrapping the model in ``DistributedDataParallel`` this strategy attaches a
    :class:`~lightning_hpml.strategies.lags.LayerwiseSparseReducer`: per-parameter post-accumulate-grad hooks start
    each group's exchange (top-k with error feedback, one ``all_gather``) the moment its gradients are final, on any
    backend (Gloo on CPU, NCCL on GPU), and the optimizer step waits only for what is still in flight. Gradient
    clipping (``Trainer(gradient_clip_val=...)``) and AMP unscaling see the aggregated gradients; gradient accumulation
    exchanges once per optimizer step. See :mod:`~lightning_hpml.strategies.lags.reducer` for the differences from
    the official code.

    The defaults are the configuration measured to keep dense accuracy (synthetic stereo with FADNet's Adam recipe:
    mean EPE +2.6 % over four seeds; digits: +0.55 pp) while sending a fraction of the bytes (``benchmarks/README.md``):
    5 % of each large tensor after a 96-step dense warm-up (dense instead where the adaptive plan finds a dense
    allreduce hidden by backward), tensors below 131,072 elements as int8, bf16 values. The paper's plain algorithm
    is ``LAGSStrategy(**PAPER_SETTINGS)`` (:data:`~lightning_hpml.strategies.lags.PAPER_SETTINGS`).

    Args:
        density: fraction of each group's entries sent (fixed mode, and while profiling in adaptive mode).
        adaptive: choose each group's density from the link cost measured at start-up and the profiled backward
            times, so its exchange hides behind the compute that remains (:mod:`~.planner`).
        density_min: lower clamp of adaptive densities.
        density_max: upper clamp of adaptive sparse densities (1: no cap; the default 0.05 saves selection CPU, whose
            cost the plan does not model).
        density_warmup_steps: optimizer steps over which every group's density decays exponentially from 1 (dense)
            to its fixed or planned value, the warm-up of Deep Gradient Compression (Lin et al., ICLR 2018); 0: none.
            Restored with the step count on resume.
        group_threshold: merge consecutive parameters (backward order) until a group holds this many elements.
        dense_below: parameters with fewer elements (biases, normalisation weights, small layers) are grouped only
            with each other and always sent dense: a small share of the bytes, which top-k over a group shared with
            large layers starves (Deep Gradient Compression does not compress them either). 0: none.
        dense_group_threshold: close a group of those small tensors at this many elements (default
            ``group_threshold``). They are spread over the whole network: a small value sends each soon after its
            gradient is final, instead of holding the first ones until the end of backward, where nothing hides them.
        dense_below_bits: how those small tensors travel: 32 (fp32 allreduce), or 8 (int8) / 1 (scaled sign) per entry
            with error feedback, so that every entry is still sent every step at 1/4 or 1/32 of the bytes
            (:mod:`~.quantize`).
        sparse_values: dtype of the selected values on the wire, ``"float32"`` or ``"bfloat16"`` (6 instead of 8 bytes
            per entry with its index; the rounding error stays in the residual).
        warmup_steps: optimizer steps before profiling begins.
        profile_steps: optimizer steps whose backward timings are averaged for the plan.
        replan_every_n_steps: profile and plan again every this many steps (``None``: plan once).
        probe_bytes: message sizes of the start-up alpha-beta microbenchmark.
        broadcast_buffers: broadcast rank 0's buffers (e.g. BatchNorm statistics) before each training step, as
            ``DistributedDataParallel`` does by default.
        log_stats: log ``lags/bytes_sent``, ``lags/density``, ``lags/comm_hidden_s``, ``lags/comm_exposed_s`` and
            friends every optimizer step.

    The remaining arguments are :class:`~lightning.pytorch.strategies.DDPStrategy`'s.
    """

    strategy_name = "lags"

    def __init__(
        self,
        density: float = 0.05,
        adaptive: bool = True,
        density_min: float = 0.05,
        density_max: float = 0.05,
        density_warmup_steps: int = 96,
        group_threshold: int = 262144,
        dense_below: int = 131072,
        dense_group_threshold: int | None = 16384,
        dense_below_bits: int = 8,
        sparse_values: str = "bfloat16",
        warmup_steps: int = 1,
        profile_steps: int = 5,
        replan_every_n_steps: int | None = None,
        probe_bytes: tuple[int, ...] = DEFAULT_PROBE_BYTES,
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
        self._reducer_kwargs = {
            "density": density,
            "adaptive": adaptive,
            "density_min": density_min,
            "density_max": density_max,
            "density_warmup_steps": density_warmup_steps,
            "group_threshold": group_threshold,
            "dense_below": dense_below,
            "dense_group_threshold": dense_group_threshold,
            "dense_below_bits": dense_below_bits,
            "sparse_values": sparse_values,
            "warmup_steps": warmup_steps,
            "profile_steps": profile_steps,
            "replan_every_n_steps": replan_every_n_steps,
            "probe_bytes": tuple(probe_bytes),
        }
        check_settings(**self._reducer_kwargs)  # fail at construction, not after the processes have started
        self._broadcast_buffers = broadcast_buffers
        self._log_stats = log_stats
        self.reducer: LayerwiseSparseReducer | None = None

    @classmethod
    def register_strategies(cls, strategy_registry) -> None:
        strategy_registry.register(
            "lags",
            cls,
            description="LAGS-SGD: layer-wise adaptive top-k gradient sparsification overlapped with backward",
        )
        strategy_registry.register(
            "lags_fixed_density",
            cls,
            description="Layer-wise top-k gradient sparsification at a fixed density (0.05), overlapped with backward",
            adaptive=False,
        )

    # ------------------------------------------------------------------ set-up and teardown
    def configure_ddp(self) -> None:
        """Called by ``DDPStrategy.setup`` when fitting: sync rank 0's weights and attach the reducer (no DDP wrap)."""
        assert isinstance(self.model, pl.LightningModule)
        _sync_module_states(self.model)
        self.reducer = LayerwiseSparseReducer(self.model, **self._reducer_kwargs)
        atexit.unregister(_destroy_gloo_group_at_exit)  # once per process, however many fits
        atexit.register(_destroy_gloo_group_at_exit)
        if self.reducer.link_cost is not None:
            rank_zero_info(f"LAGS link cost on this process group: {self.reducer.link_cost}")

    def teardown(self) -> None:
        if self.reducer is not None:
            self.reducer.remove_hooks()
        super().teardown()

    # ------------------------------------------------------------------ training step
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        if self._broadcast_buffers and self.reducer is not None:
            buffers = list(self.lightning_module.buffers())
            try:
                _sync_params_and_buffers(_get_default_group(), buffers, _BUFFER_BUCKET_BYTES, src=0)
            except RuntimeError as error:
                raise LAGSCommunicationError(
                    f"rank {self.global_rank}: broadcasting buffers from rank 0 before training step "
                    f"{self.lightning_module.global_step} failed; another rank probably raised or died. Cause: {error}"
                ) from error
        return super().training_step(*args, **kwargs)

    def pre_backward(self, closure_loss: Tensor) -> None:
        super().pre_backward(closure_loss)
        if self.reducer is not None:
            scaler = getattr(self.precision_plugin, "scaler", None)
            self.reducer.grad_scale = float(scaler.get_scale()) if scaler is not None else 1.0

    @contextlib.contextmanager
    def block_backward_sync(self) -> Generator:
        """Gradient accumulation: no exchange until the micro-batch that steps the optimizer."""
        if self.reducer is None:
            yield None
            return
        with self.reducer.no_sync():
            yield None

    def optimizer_step(
        self, optimizer: Optimizer, closure: Callable[[], Any], model: pl.LightningModule | None = None, **kwargs: Any
    ) -> Any:
        """Finish the exchange right after backward (inside the closure), before clipping, unscaling and the step."""
        stats = None

        def closure_then_exchange() -> Any:
            nonlocal stats
            result = closure()
            if self.reducer is not None:
                stats = self.reducer.finish()
            return result

        output = super().optimizer_step(optimizer, closure_then_exchange, model, **kwargs)
        if stats is not None and self._log_stats:
            metrics = {f"lags/{key}": value for key, value in stats.to_dict().items()}
            self.lightning_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)
        return output

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH, storage_options: Any | None = None) -> None:
        """Add every rank's residuals and the density plan (a collective: all ranks call this)."""
        if self.reducer is not None and _distributed_is_initialized():
            checkpoint[_CHECKPOINT_KEY] = self.reducer.gather_state_dict()
        super().save_checkpoint(checkpoint, filepath, storage_options=storage_options)

    def load_optimizer_state_dict(self, checkpoint: dict[str, Any]) -> None:
        super().load_optimizer_state_dict(checkpoint)
        if self.reducer is None:
            return
        if _CHECKPOINT_KEY in checkpoint:
            self.reducer.load_state_dict(checkpoint[_CHECKPOINT_KEY], rank=self.global_rank)
        else:
            rank_zero_info("The checkpoint has no LAGS state (saved by another strategy): residuals start at zero.")
