"""Layer-wise sparse gradient exchange, started from backward hooks and finished before the optimizer step.

LAGS-SGD: Shaohuai Shi, Zhenheng Tang, Qiang Wang, Kaiyong Zhao, Xiaowen Chu, "Layer-wise Adaptive Gradient
Sparsification for Distributed Deep Learning with Convergence Guarantees", ECAI 2020 (arXiv 1911.08727).
Official code: https://github.com/HKBU-HPML/OMGS-SGD (``hv_distributed_optimizer.py``, ``compression.py``).

Per group of parameters (small layers merged by an element threshold, in backward order) and rank ``p``:
``a = residual + g`` (residual in gradient units, as the official code; the paper folds the learning rate in),
``residual = a - TopK(a, k)``, and every rank receives ``(1/P) sum_p TopK(a_p, k)`` as the group's gradient. The
exchange is one ``all_gather`` of a packed ``[values | int32 indices]`` message (the official code sends two), then
a scatter-add. Groups at density 1 use a plain allreduce and keep no residual (a residual left from sparse steps,
e.g. while profiling or warming up, is folded into the group's next dense exchange and cleared).

``density_warmup_steps`` > 0 adds the dense warm-up of Deep Gradient Compression (Lin et al., ICLR 2018): at
step ``s`` a group planned at density ``d`` sends ``d ** (s / density_warmup_steps)`` of its entries (dense while
that sends at least the bytes of an allreduce), reaching ``d`` after the warm-up (:func:`.planner.warmup_density`).
Error feedback releases an entry's accumulated gradient in one burst; early in training, when the gradients change
fastest, those stale bursts hurt most, and adaptive optimizers (Adam/AMSGrad normalise every entry by its own
running second moment, and AMSGrad keeps its maximum) are distorted by them for the rest of the run.

Differences from the official code, on purpose:

- the adaptive density rule is live (:mod:`.planner`), with alpha and beta measured on the running process group
  (:mod:`.cost_model`) instead of hard-coded 1 GbE constants (the released rule returns 0.001);
- values and indices travel in one message instead of two, so each group pays the latency once;
- the exact top-k uses a sampled threshold pre-filter on large groups (:mod:`.topk`);
- groups follow the order in which gradients became final on the first step (broadcast from rank 0), not the
  reversed registration order, when the two differ;
- ``dense_below`` > 0 (not in the official code, which sparsifies every tensor): tensors smaller than that are
  grouped only with each other and always allreduced dense, as DGC leaves biases and small layers uncompressed
  (measured on the synthetic stereo task with Adam: +16.7 % EPE without; with 131,072 +2.5 % on the mean of four
  seeds, -5.0 % to +6.7 % per seed; see ``benchmarks/README.md``);
- ``dense_group_threshold`` (not in the official code): those small tensors' groups close at this size instead of
  ``group_threshold``; small tensors sit all over a network, so a large group held the first of them (e.g. the
  classifier's) until the end of backward, where nothing hides the exchange (CNN benchmark at 100 Mbit/s: 46-49 ms
  exposed per step with 262,144, 16.7 ms with 16,384);
- ``dense_below_bits`` 8 or 1 (not in the official code): those small groups travel as int8 or as a scaled sign with
  error feedback (:mod:`.quantize`), still every entry every step, at 1/4 or 1/32 of the bytes;
- ``sparse_values="bfloat16"`` (not in the official code): selected values travel as bf16, 6 bytes per entry with
  the index instead of 8, the rounding error kept in the residual.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .cost_model import DEFAULT_PROBE_BYTES, LinkCost, all_gather_single, measure_link_cost
from .groups import GradientGroup, build_groups, split_by_threshold
from .planner import VALUE_BYTES, plan_densities, sparse_sends_more, warmup_density
from .quantize import QUANTIZED_BITS, add_gathered_quantized, message_words, quantize_
from .topk import (
    SPARSE_VALUE_DTYPES,
    add_gathered_sparse,
    num_selected,
    pack_sparse,
    take_topk_,
    wire_bytes_per_selected,
)

__all__ = ["PAPER_SETTINGS", "ExchangeStats", "LAGSCommunicationError", "LayerwiseSparseReducer", "check_settings"]

#: LAGS as the paper states it and the official code runs it (density 0.01 in [0.001, 1], the launcher's groups of
#: 8192 elements, no dense warm-up, every tensor sparsified, fp32 values): ``LAGSStrategy(**PAPER_SETTINGS)``. These
#: were the defaults before 2026-12-01; the defaults now are the configuration measured to keep dense accuracy.
PAPER_SETTINGS: dict[str, object] = {
    "density": 0.01,
    "density_min": 0.001,
    "density_max": 1.0,
    "density_warmup_steps": 0,
    "group_threshold": 8192,
    "dense_below": 0,
    "dense_group_threshold": None,
    "dense_below_bits": 32,
    "sparse_values": "float32",
}


class LAGSCommunicationError(RuntimeError):
    """A gradient exchange failed, usually because another rank raised or died."""


@dataclass
class ExchangeStats:
    """What one optimizer step's gradient exchange cost on this rank.

    ``bytes_sent`` follows the ring algorithms (allgather: ``(P-1) * message``; allreduce: ``2(P-1)/P * bytes``).
    ``comm_hidden_s`` is the time exchanges were in flight before backward ended, ``comm_exposed_s`` the time
    :meth:`LayerwiseSparseReducer.finish` blocked on them afterwards (writing back the groups already done is not
    counted: it overlaps the wait for the others).
    """

    bytes_sent: float = 0.0
    dense_bytes: float = 0.0
    density: float = 0.0
    comm_hidden_s: float = 0.0
    comm_exposed_s: float = 0.0
    dense_groups: int = 0
    groups: int = 0

    def to_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


@dataclass(eq=False)
class _Exchange:
    group: GradientGroup
    work: dist.Work
    launched_at: float
    k: int | None  # None: dense (allreduce, or quantised when bits is set)
    gathered: Tensor | None = None
    bits: int | None = None  # quantised all_gather at this many bits per entry
    done_at: float | None = field(default=None)


class LayerwiseSparseReducer:
    """Exchange each group's gradients as soon as they are final; :meth:`finish` completes the step.

    Usage (the :class:`~lightning_hpml.strategies.LAGSStrategy` does this for a Lightning ``Trainer``)::

        reducer = LayerwiseSparseReducer(model, density=0.01)
        loss.backward()  # hooks launch each group's exchange while backward goes on
        reducer.finish()  # wait for what is in flight, write the averaged gradients into .grad
        optimizer.step()

    Args:
        module: the model; every parameter with ``requires_grad`` must receive a gradient each step.
        group: the process group (default: the world).
        density: fraction of each group's entries sent; the fixed density, and the density while profiling.
        adaptive: plan a density per group from the measured link cost and profiled backward times.
        density_min: lower clamp of adaptive densities.
        density_max: upper clamp of adaptive sparse densities (1: no cap; the default 0.05 saves selection CPU).
        density_warmup_steps: steps over which each group's density decays exponentially from 1 to its fixed or
            planned value (DGC's dense warm-up; 0: none). Counted in optimizer steps from the start of training.
        group_threshold: merge consecutive parameters until a group holds at least this many elements.
        dense_below: parameters with fewer elements are grouped only with each other and always sent dense.
        dense_group_threshold: close a group of those small parameters at this many elements (default
            ``group_threshold``); smaller keeps their exchanges spread over backward instead of piled up at its end.
        warmup_steps: steps (with ``density``) before profiling starts.
        profile_steps: steps whose backward timings are averaged for the plan.
        replan_every_n_steps: profile and plan again after this many steps (``None``: plan once).
        probe_bytes: message sizes of the start-up microbenchmark (adaptive mode).
        link_cost: skip the microbenchmark and use this cost model.
        dense_below_bits: how the ``dense_below`` groups travel: 32 (fp32 allreduce), 8 (int8) or 1 (scaled sign),
            the last two with error feedback (:mod:`.quantize`).
        sparse_values: dtype of the selected values on the wire, ``"float32"`` or ``"bfloat16"`` (6 instead of 8
            bytes per entry with its int32 index; the rounding error stays in the residual).
    """

    def __init__(
        self,
        module: nn.Module,
        group: dist.ProcessGroup | None = None,
        *,
        density: float = 0.05,
        adaptive: bool = True,
        density_min: float = 0.05,
        density_max: float = 0.05,
        density_warmup_steps: int = 96,
        group_threshold: int = 262144,
        dense_below: int = 131072,
        dense_group_threshold: int | None = 16384,
        warmup_steps: int = 1,
        profile_steps: int = 5,
        replan_every_n_steps: int | None = None,
        probe_bytes: tuple[int, ...] = DEFAULT_PROBE_BYTES,
        link_cost: LinkCost | None = None,
        dense_below_bits: int = 8,
        sparse_values: str = "bfloat16",
    ) -> None:
        check_settings(
            density=density,
            density_min=density_min,
            density_max=density_max,
            warmup_steps=warmup_steps,
            profile_steps=profile_steps,
            replan_every_n_steps=replan_every_n_steps,
            density_warmup_steps=density_warmup_steps,
            group_threshold=group_threshold,
            dense_below=dense_below,
            dense_group_threshold=dense_group_threshold,
            dense_below_bits=dense_below_bits,
            sparse_values=sparse_values,
        )
        self.process_group = group
        self.world_size = dist.get_world_size(group)
        self.density = density
        self.adaptive = adaptive
        self.density_min = density_min
        self.density_max = density_max
        self.density_warmup_steps = density_warmup_steps
        self.group_threshold = group_threshold
        self.dense_below = dense_below
        self.dense_group_threshold = dense_group_threshold
        self.warmup_steps = warmup_steps
        self.profile_steps = profile_steps
        self.replan_every_n_steps = replan_every_n_steps
        self.dense_below_bits = dense_below_bits
        self.sparse_value_dtype: torch.dtype = getattr(torch, sparse_values)
        self.bytes_per_selected = wire_bytes_per_selected(self.sparse_value_dtype)
        #: Multiplier of the gradients in ``.grad`` (the AMP loss scale), so residuals stay in gradient units.
        self.grad_scale = 1.0
        self.step = 0
        self.last_stats: ExchangeStats | None = None

        self._named_params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        self._device = self._named_params[0][1].device if self._named_params else torch.device("cpu")
        self.groups = self._build_groups(self._named_params[::-1])
        self.densities = self._initial_densities()
        self.link_cost = link_cost
        if adaptive and link_cost is None:
            self.link_cost = measure_link_cost(group, probe_bytes, device=self._device)
        #: Mean seconds from the first final gradient to each group's (and, last, to ``finish``), when planned.
        self.profiled_times: list[float] | None = None
        self._next_profile_start: int | None = warmup_steps if adaptive else None
        self._profile_sum: list[float] | None = None
        self._profile_count = 0
        self._order_checked = False
        self._generator = torch.Generator(device=self._device)
        self._generator.manual_seed(0)
        self._scratch = torch.empty(0, dtype=torch.float32, device=self._device)

        self._sync = True
        self._member: dict[nn.Parameter, tuple[GradientGroup, int]] = {}
        self._index_groups()
        self._reset_step()
        self._hooks = [p.register_post_accumulate_grad_hook(self._on_grad_ready) for _, p in self._named_params]

    # ------------------------------------------------------------------ hooks and exchange
    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Accumulate gradients locally (no exchange) inside this context, like ``DistributedDataParallel.no_sync``."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def _on_grad_ready(self, param: nn.Parameter) -> None:
        if not self._sync:
            return
        if self._device.type == "cuda" and self._profiling():
            torch.cuda.synchronize(self._device)  # host timestamps must mean "gradients computed", not "enqueued"
        now = time.perf_counter()
        group, member = self._member[param]
        if member in self._ready[group.index]:
            raise RuntimeError(
                f"the gradient of {group.names[member]!r} became final twice before finish(); LAGS exchanges once "
                "per optimizer step, so call backward once per step (accumulate across steps instead)"
            )
        if self._first_ready_at is None:
            self._first_ready_at = now
        self._arrival.append(param)
        self._ready[group.index].add(member)
        # A one-tensor group reads its gradient where autograd left it (copied only if sent dense): the big layers,
        # most of the bytes, then skip a full copy per step.
        alone = len(group.params) == 1 and param.grad.is_contiguous()
        if not alone:
            flat_slice = group.flat[group.offsets[member] : group.offsets[member] + param.numel()]
            if param.grad.data_ptr() != flat_slice.data_ptr():  # else .grad is still the view given by finish()
                flat_slice.copy_(param.grad.reshape(-1))
        if len(self._ready[group.index]) == len(group.params):
            self._ready_at[group.index] = now
            self._launch(group, now, param.grad.view(-1) if alone else group.flat)

    def current_density(self, index: int) -> float:
        """Density group ``index`` uses at this step: its fixed or planned density, raised during the warm-up."""
        planned = self.densities[index]
        density = warmup_density(planned, self.step, self.density_warmup_steps)
        if density > planned and sparse_sends_more(density, self.world_size, self.bytes_per_selected):
            return 1.0  # warming up: a sparse exchange this dense sends at least an allreduce's bytes
        return density

    def _launch(self, group: GradientGroup, now: float, gradient: Tensor) -> None:
        """Start the exchange of ``group``, whose gradient (scaled, flat) is ``gradient``: ``group.flat`` or, for a
        one-tensor group, that tensor's ``.grad``."""
        density = self.current_density(group.index)
        if group.always_dense and self.dense_below_bits < 32:
            exchange = self._launch_quantized(group, now, gradient)
        elif density >= 1.0:
            if gradient.data_ptr() != group.flat.data_ptr():
                group.flat.copy_(gradient)
            if group.has_residual:  # left by earlier sparse steps: send it now rather than hold it forever
                group.flat.add_(group.residual.to(group.flat.dtype), alpha=self.grad_scale)
                group.residual.zero_()
                group.has_residual = False
            work = dist.all_reduce(group.flat, group=self.process_group, async_op=True)
            exchange = _Exchange(group, work, now, k=None)
        else:
            k = num_selected(group.numel, density)
            with self._accumulate(group, gradient) as residual:
                values, indices = take_topk_(
                    residual, k, self._generator, self._scratch_for(group.numel), self.sparse_value_dtype
                )
                if self.grad_scale != 1.0:
                    values = values * self.grad_scale  # AMP scales are powers of two: exact in bf16 too
            message = pack_sparse(values, indices)
            gathered = message.new_empty(self.world_size * message.numel())
            work = all_gather_single(gathered, message, group=self.process_group, async_op=True)
            exchange = _Exchange(group, work, now, k=k, gathered=gathered)
        work = exchange.work
        work.get_future().add_done_callback(lambda _future, ex=exchange: setattr(ex, "done_at", time.perf_counter()))
        self._exchanges.append(exchange)

    def _launch_quantized(self, group: GradientGroup, now: float, gradient: Tensor) -> _Exchange:
        with self._accumulate(group, gradient) as residual:
            message = quantize_(residual, group.sizes, self.dense_below_bits, self.grad_scale)
        gathered = message.new_empty(self.world_size * message.numel())
        work = all_gather_single(gathered, message, group=self.process_group, async_op=True)
        return _Exchange(group, work, now, k=None, gathered=gathered, bits=self.dense_below_bits)

    @contextlib.contextmanager
    def _accumulate(self, group: GradientGroup, gradient: Tensor) -> Iterator[Tensor]:
        """Yield ``residual + gradient`` (in place in the residual, gradient units) for the caller to take what it
        sends from; on an AMP-overflowed step (non-finite, the scaler will skip it) the old residual is put back."""
        scale = self.grad_scale  # .grad holds scale * gradient; the residual stays in gradient units
        residual = group.residual
        previous = residual.clone() if scale != 1.0 else None
        residual.add_(gradient, alpha=1.0 / scale)
        finite = previous is None or bool(torch.isfinite(residual).all())
        yield residual
        group.has_residual = True
        if not finite:
            residual.copy_(previous)

    def _scratch_for(self, numel: int) -> Tensor:
        """The magnitudes buffer shared by all groups (sparsified one at a time on the autograd thread), grown to the
        largest group sent sparse so far."""
        if self._scratch.numel() < numel:
            self._scratch = torch.empty(numel, dtype=torch.float32, device=self._device)
        return self._scratch

    def finish(self) -> ExchangeStats | None:
        """Wait for every exchange of this step and write the averaged gradients into ``param.grad``.

        Returns the step's :class:`ExchangeStats`, or ``None`` when no gradient was produced since the last call
        (every rank must then skip together, as with DDP).
        """
        if self._first_ready_at is None:
            return None
        finish_at = time.perf_counter()
        missing = [
            group.names[m]
            for group in self.groups
            for m in range(len(group.params))
            if m not in self._ready[group.index]
        ]
        if missing:
            self._reset_step()
            raise RuntimeError(
                f"parameters {missing} received no gradient in this step; LAGS exchanges every trainable parameter "
                "each step (as DDP without find_unused_parameters). Freeze them (requires_grad=False) or use them."
            )
        # In launch order: each group is averaged into .grad while the later ones are still in flight, so the
        # write-back overlaps the wait for the last groups instead of following it.
        waited = 0.0
        for exchange in self._exchanges:
            wait_started = time.perf_counter()
            try:
                exchange.work.wait()
            except Exception as error:
                self._reset_step()
                raise LAGSCommunicationError(
                    f"rank {dist.get_rank(self.process_group)}: gradient exchange of LAGS group {exchange.group.index} "
                    f"({exchange.group.names[0]}...) failed at step {self.step}; another rank probably raised or "
                    f"died. Cause: {error}"
                ) from error
            waited += time.perf_counter() - wait_started
            exchange.done_at = exchange.done_at or time.perf_counter()
            self._write_gradients(exchange)
        stats = self._stats(finish_at, waited)
        self._profile_and_plan(finish_at)
        self.step += 1
        self.last_stats = stats
        self._reset_step()
        return stats

    def _write_gradients(self, exchange: _Exchange) -> None:
        """Average into ``group.flat`` and make each ``.grad`` a view of it (as DDP's ``gradient_as_bucket_view``),
        so no copy back is needed; a parameter whose dtype differs from the group buffer's gets a copy."""
        group = exchange.group
        alpha = 1.0 / self.world_size
        if exchange.bits is not None:
            add_gathered_quantized(
                group.flat.zero_(), exchange.gathered, self.world_size, group.sizes, exchange.bits, alpha
            )
        elif exchange.k is None:
            group.flat.div_(self.world_size)
        else:
            add_gathered_sparse(
                group.flat.zero_(), exchange.gathered, self.world_size, exchange.k, alpha, self.sparse_value_dtype
            )
        for _, param, flat_slice in group.slices():
            if param.grad.dtype == flat_slice.dtype:
                param.grad = flat_slice.view_as(param)
            else:
                param.grad.copy_(flat_slice.view_as(param.grad))

    def _stats(self, finish_at: float, waited: float) -> ExchangeStats:
        world = self.world_size
        stats = ExchangeStats(groups=len(self.groups), comm_exposed_s=waited)
        sent_elements = 0
        for exchange in self._exchanges:
            numel = exchange.group.numel
            dense_bytes = 2 * (world - 1) / world * VALUE_BYTES * numel
            stats.dense_bytes += dense_bytes
            if exchange.bits is not None:  # every entry, quantised: (P-1) messages of an allgather
                stats.bytes_sent += (world - 1) * self._quantized_message_bytes(exchange.group)
                stats.dense_groups += 1
                sent_elements += numel
            elif exchange.k is None:
                stats.bytes_sent += dense_bytes
                stats.dense_groups += 1
                sent_elements += numel
            else:
                stats.bytes_sent += (world - 1) * self.bytes_per_selected * exchange.k
                sent_elements += exchange.k
        stats.density = sent_elements / sum(group.numel for group in self.groups)
        stats.comm_hidden_s = _union_length([(ex.launched_at, min(ex.done_at, finish_at)) for ex in self._exchanges])
        return stats

    def _reset_step(self) -> None:
        self._ready: list[set[int]] = [set() for _ in self.groups]
        self._ready_at: list[float | None] = [None] * len(self.groups)
        self._first_ready_at: float | None = None
        self._arrival: list[nn.Parameter] = []
        self._exchanges: list[_Exchange] = []

    # ------------------------------------------------------------------ grouping, profiling, planning
    def _index_groups(self) -> None:
        self._member = {p: (group, m) for group in self.groups for m, p in enumerate(group.params)}

    def _regroup(self, ordered_names: list[str]) -> None:
        """Rebuild the groups for a new parameter order, carrying residuals over by parameter name."""
        residuals = self._residuals_by_name()
        by_name = dict(self._named_params)
        ordered = [(n, by_name[n]) for n in ordered_names]
        self.groups = self._build_groups(ordered)
        for group in self.groups:
            for m, name in enumerate(group.names):
                group.residual_slice(m).copy_(residuals[name])
            group.has_residual = bool(group.residual.any())
        self.densities = self._initial_densities()
        self._index_groups()

    def _build_groups(self, ordered: list[tuple[str, nn.Parameter]]) -> list[GradientGroup]:
        members = split_by_threshold(ordered, self.group_threshold, self.dense_below, self.dense_group_threshold)
        return build_groups(members, self.dense_below)

    def _initial_densities(self) -> list[float]:
        """``density`` for every group, 1 for the ``always_dense`` ones (before a plan, or in fixed mode)."""
        return [1.0 if group.always_dense else self.density for group in self.groups]

    def _profiling(self) -> bool:
        return self._next_profile_start is not None and self.step >= self._next_profile_start

    def _profile_and_plan(self, finish_at: float) -> None:
        if not self._order_checked:
            self._check_order()
        if not self._profiling():
            return
        relative = [t - self._first_ready_at for t in self._ready_at] + [finish_at - self._first_ready_at]
        if self._profile_sum is None:
            self._profile_sum, self._profile_count = [0.0] * len(relative), 0
        self._profile_sum = [a + b for a, b in zip(self._profile_sum, relative, strict=True)]
        self._profile_count += 1
        if self._profile_count == self.profile_steps:
            self._plan([total / self._profile_count for total in self._profile_sum])
            every = self.replan_every_n_steps
            self._next_profile_start = None if every is None else self.step + 1 + every - self.profile_steps
            self._profile_sum, self._profile_count = None, 0

    def _plan(self, mean_times: list[float]) -> None:
        """Plan on every rank from rank-mean timings, then take rank 0's plan so all ranks agree bit for bit."""
        timings = torch.tensor(mean_times, dtype=torch.float64, device=self._device)
        dist.all_reduce(timings, group=self.process_group)
        timings = (timings / self.world_size).cpu().tolist()
        planned = plan_densities(
            [g.numel for g in self.groups],
            timings[:-1],
            self.link_cost,
            self.density_min,
            self.density_max,
            world_size=self.world_size,
            always_dense=[g.always_dense for g in self.groups],
            bytes_per_selected=self.bytes_per_selected,
            always_dense_bytes=[self._quantized_message_bytes(g) for g in self.groups],
        )
        plan = torch.tensor(planned, dtype=torch.float64, device=self._device)
        dist.broadcast(plan, group_src=0, group=self.process_group)
        self.densities = plan.cpu().tolist()
        self.profiled_times = timings

    def _quantized_message_bytes(self, group: GradientGroup) -> int | None:
        """Bytes of ``group``'s quantised all_gather message per rank, or ``None`` if it is not sent quantised."""
        if not group.always_dense or self.dense_below_bits == 32:
            return None
        return 4 * message_words(group.numel, len(group.params), self.dense_below_bits)

    def _check_order(self) -> None:
        """After the first step, regroup in the order gradients actually became final (rank 0's order)."""
        self._order_checked = True
        position = {p: i for i, (_, p) in enumerate(self._named_params)}
        observed = torch.tensor([position[p] for p in self._arrival], dtype=torch.int64, device=self._device)
        dist.broadcast(observed, group_src=0, group=self.process_group)
        names = [self._named_params[i][0] for i in observed.cpu().tolist()]
        if names != [name for group in self.groups for name in group.names]:
            self._regroup(names)

    # ------------------------------------------------------------------ state
    def _residuals_by_name(self) -> dict[str, Tensor]:
        return {name: group.residual_slice(m).clone() for group in self.groups for m, name in enumerate(group.names)}

    def state_dict(self) -> dict:
        """This rank's residuals (by parameter name) and the shared plan."""
        return {
            "step": self.step,
            "world_size": self.world_size,
            "group_names": [list(group.names) for group in self.groups],
            "densities": list(self.densities),
            "next_profile_start": self._next_profile_start,
            "profile_sum": self._profile_sum,
            "profile_count": self._profile_count,
            "profiled_times": self.profiled_times,
            "order_checked": self._order_checked,
            "link_cost": self.link_cost.to_dict() if self.link_cost is not None else None,
            "residuals": self._residuals_by_name(),
        }

    def gather_state_dict(self) -> dict:
        """:meth:`state_dict` with every rank's residuals (a collective; ``residuals`` is a list indexed by rank)."""
        state = self.state_dict()
        local = torch.cat([group.residual for group in self.groups])
        gathered = local.new_empty(self.world_size * local.numel())
        all_gather_single(gathered, local, group=self.process_group)
        layout = [
            (name, group.residual_slice(m).numel()) for group in self.groups for m, name in enumerate(group.names)
        ]
        state["residuals"] = [_split_by_name(row, layout) for row in gathered.view(self.world_size, -1).cpu()]
        return state

    def load_state_dict(self, state: dict, rank: int | None = None) -> None:
        """Restore the plan and residuals; ``state["residuals"]`` may be one rank's dict or a list by rank."""
        if state["world_size"] != self.world_size:
            raise ValueError(
                f"the LAGS state was saved with {state['world_size']} processes but this run has {self.world_size}; "
                "residuals are per rank, so resume with the same number of processes"
            )
        known = {name for name, _ in self._named_params}
        saved = [name for names in state["group_names"] for name in names]
        if set(saved) != known:
            raise ValueError(
                f"the LAGS state does not match the model: missing {sorted(known - set(saved))}, "
                f"unexpected {sorted(set(saved) - known)}"
            )
        by_name = dict(self._named_params)
        self.groups = build_groups(
            [[(name, by_name[name]) for name in names] for names in state["group_names"]], self.dense_below
        )
        self._index_groups()
        residuals = state["residuals"]
        if isinstance(residuals, list):
            residuals = residuals[dist.get_rank(self.process_group) if rank is None else rank]
        for group in self.groups:
            for m, name in enumerate(group.names):
                group.residual_slice(m).copy_(residuals[name].to(group.residual.device))
            group.has_residual = bool(group.residual.any())
        self.densities = [float(d) for d in state["densities"]]
        self.step = int(state["step"])
        self._next_profile_start = state["next_profile_start"]
        self._profile_sum = state["profile_sum"]
        self._profile_count = int(state["profile_count"])
        self.profiled_times = state["profiled_times"]
        self._order_checked = bool(state["order_checked"])
        if state["link_cost"] is not None:
            self.link_cost = LinkCost(**state["link_cost"])
        self._reset_step()

    def remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []


def check_settings(
    *,
    density: float,
    density_min: float,
    density_max: float,
    warmup_steps: int,
    profile_steps: int,
    replan_every_n_steps: int | None,
    density_warmup_steps: int = 0,
    group_threshold: int = 0,
    dense_below: int = 0,
    dense_group_threshold: int | None = None,
    dense_below_bits: int = 32,
    sparse_values: str = "float32",
    **_other: object,
) -> None:
    """Raise ``ValueError`` naming the argument when a reducer setting is out of range (takes the reducer's keyword
    arguments; the others are checked where they are used)."""
    num_selected(1, density)  # validates (0, 1]
    if not 0.0 < density_min <= density_max <= 1.0:
        raise ValueError(f"need 0 < density_min <= density_max <= 1, got {density_min} and {density_max}")
    if warmup_steps < 0 or profile_steps < 1:
        raise ValueError(f"need warmup_steps >= 0 and profile_steps >= 1, got {warmup_steps}, {profile_steps}")
    if replan_every_n_steps is not None and replan_every_n_steps <= profile_steps:
        raise ValueError(f"replan_every_n_steps ({replan_every_n_steps}) must exceed profile_steps ({profile_steps})")
    if density_warmup_steps < 0:
        raise ValueError(f"need density_warmup_steps >= 0, got {density_warmup_steps}")
    if group_threshold < 0 or dense_below < 0 or (dense_group_threshold or 0) < 0:
        raise ValueError(
            "need group_threshold, dense_below and dense_group_threshold >= 0 elements, got "
            f"{group_threshold}, {dense_below}, {dense_group_threshold}"
        )
    if dense_below_bits not in (32, *QUANTIZED_BITS):
        raise ValueError(f"dense_below_bits must be one of {(32, *QUANTIZED_BITS)}, got {dense_below_bits}")
    if sparse_values not in SPARSE_VALUE_DTYPES:
        raise ValueError(f"sparse_values must be one of {SPARSE_VALUE_DTYPES}, got {sparse_values!r}")


def _split_by_name(row: Tensor, layout: list[tuple[str, int]]) -> dict[str, Tensor]:
    out, start = {}, 0
    for name, numel in layout:
        out[name] = row[start : start + numel].clone()
        start += numel
    return out


def _union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by ``intervals`` (overlaps counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total
