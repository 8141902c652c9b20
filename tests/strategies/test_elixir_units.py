"""Elixir's pieces in one process: ledger, Belady simulation, packing, plan search, runtime, optimizer, scaler."""

from __future__ import annotations

import random

import pytest
import torch
import torchmetrics
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import StrategyRegistry
from torch import nn

import lightning_hpml  # noqa: F401  (registers the strategy names)
from lightning_hpml.modules import create_model
from lightning_hpml.strategies.elixir import (
    ChunkKind,
    DeviceMemoryBudget,
    ElixirMemoryError,
    ElixirPlan,
    ElixirPrecision,
    ElixirStrategy,
    HardwareProfile,
    search_plan,
)
from lightning_hpml.strategies.elixir.cache_simulator import access_sequence, count_gathers
from lightning_hpml.strategies.elixir.loss_scaler import DynamicLossScaler
from lightning_hpml.strategies.elixir.optimizer import ShardedParamGroups
from lightning_hpml.strategies.elixir.packing import assign_kinds, pack_public, trainable_parameters
from lightning_hpml.strategies.elixir.profiler import profile_forward
from lightning_hpml.strategies.elixir.runtime import ChunkRuntime

HARDWARE = HardwareProfile(1e10, 1e10, 4e10, 3e8, 3e8)


# ---------------------------------------------------------------------- ledger
def test_budget_books_releases_and_refuses():
    budget = DeviceMemoryBudget(100)
    budget.reserve(60, "a")
    budget.reserve(40, "b")
    assert budget.peak_bytes == 100
    with pytest.raises(ElixirMemoryError, match="c: 100 B in use \\+ 1 B requested > limit 100 B"):
        budget.reserve(1, "c")
    budget.release(60)
    assert budget.used_bytes == 40 and budget.peak_bytes == 100
    with pytest.raises(RuntimeError, match="out of sync"):
        budget.release(41)


# ---------------------------------------------------------------------- Belady simulation
def _optimal_gathers(sequence, blocks):
    """Fewest gathers over every eviction choice (exhaustive; tiny inputs only)."""
    best = [float("inf")]

    def go(position, cache, gathers):
        if gathers >= best[0]:
            return
        if position == len(sequence):
            best[0] = gathers
            return
        chunk = sequence[position]
        if chunk in cache:
            go(position + 1, cache, gathers)
        elif len(cache) < blocks:
            go(position + 1, cache | {chunk}, gathers + 1)
        else:
            for victim in cache:
                go(position + 1, (cache - {victim}) | {chunk}, gathers + 1)

    go(0, frozenset(), 0)
    return best[0]


def test_belady_simulation_is_optimal_on_random_sequences():
    rng = random.Random(0)
    for _ in range(40):
        sequence = [rng.randrange(5) for _ in range(rng.randrange(4, 11))]
        blocks = rng.randrange(1, 4)
        assert sum(count_gathers(sequence, blocks).values()) == _optimal_gathers(sequence, blocks)


def test_access_sequence_is_forward_then_reverse_last_use():
    calls = [["a"], ["b", "c"], ["d"], ["a2"]]
    chunk_of = {"a": 0, "b": 1, "c": 2, "d": 1, "a2": 3}
    assert access_sequence(calls, chunk_of, public={0, 1, 2}) == [0, 1, 2, 1, 1, 2, 0]


# ---------------------------------------------------------------------- packing
def test_pack_public_is_greedy_and_never_splits():
    numels = {"a": 3, "b": 4, "c": 2, "d": 6}
    assert pack_public(["a", "b", "c", "d"], numels, 8) == [["a", "b"], ["c", "d"]]
    with pytest.raises(ValueError, match="'d' has 6 elements, more than the chunk size 5"):
        pack_public(["a", "d"], numels, 5)


def test_tied_parameters_are_replicated_and_policies_apply():
    model = create_model("gpt2_tiny")
    kinds = assign_kinds(model)
    assert kinds["wte.weight"] is ChunkKind.REPLICATED  # tied to lm_head.weight
    assert kinds["blocks.0.fc.weight"] is ChunkKind.PUBLIC
    kinds = assign_kinds(model, {"blocks.1.*": "local", "ln_f": "replicated"})
    assert kinds["blocks.1.fc.weight"] is ChunkKind.LOCAL and kinds["ln_f.weight"] is ChunkKind.REPLICATED
    with pytest.raises(ValueError, match="matches no module"):
        assign_kinds(model, {"decoder.*": "local"})
    with pytest.raises(ValueError, match="must be one of"):
        assign_kinds(model, {"ln_f": "sharded"})


# ---------------------------------------------------------------------- plan search
def _profiled_gpt2():
    model = create_model("gpt2_tiny", max_len=32)
    tokens = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    profile = profile_forward(model, lambda: model(tokens).sum())
    return model, tokens, profile


def _plan(model, profile, budget, **kwargs):
    params = trainable_parameters(model)
    return search_plan(
        profile.first_use_order(list(params)),
        {n: p.numel() for n, p in params.items()},
        assign_kinds(model),
        profile,
        HARDWARE,
        world_size=1,
        compute_bytes_per_elem=4,
        state_factor=2,
        budget_bytes=budget,
        reserve_activations=False,
        **kwargs,
    )


def test_plan_fits_the_budget_and_more_budget_never_costs_more_time():
    model, _, profile = _profiled_gpt2()
    state_bytes = 16 * sum(p.numel() for p in model.parameters())
    seconds, gathers = [], []
    for fraction in (0.15, 0.2, 0.3, 0.5, 1.0):
        plan = _plan(model, profile, int(fraction * state_bytes))
        assert sum(plan.device_bytes(2, 1).values()) <= fraction * state_bytes
        seconds.append(plan.modelled_step_seconds)
        gathers.append(plan.modelled_gathers)
    assert seconds == sorted(seconds, reverse=True) and seconds[0] > seconds[-1]
    assert gathers[0] > min(gathers)  # the tightest budget forces re-gathers
    unlimited = _plan(model, profile, None)
    assert unlimited.cache_blocks == len(unlimited.public) and all(c.master_on_device for c in unlimited.chunks)
    with pytest.raises(ValueError, match="no Elixir plan fits the device budget of 1000 B"):
        _plan(model, profile, 1000)


def test_plan_honours_fixed_choices_and_round_trips():
    model, _, profile = _profiled_gpt2()
    plan = _plan(model, profile, None, chunk_numel=20000, cache_blocks=2, offload="cpu")
    assert plan.chunk_numel == 20000 and plan.cache_blocks == 2
    assert not any(c.master_on_device for c in plan.chunks)
    assert ElixirPlan.from_dict(plan.to_dict()).to_dict() == plan.to_dict()
    assert "cache blocks" in str([c._cells for c in plan.table(2, 1).columns])


# ---------------------------------------------------------------------- runtime (one process, no process group)
def test_runtime_gradients_equal_plain_under_a_tight_budget():
    model, tokens, profile = _profiled_gpt2()
    reference = create_model("gpt2_tiny", max_len=32)
    reference.load_state_dict(model.state_dict())
    reference(tokens).square().mean().backward()
    budget_bytes = int(0.15 * 16 * sum(p.numel() for p in model.parameters()))
    plan = _plan(model, profile, budget_bytes)
    budget = DeviceMemoryBudget(budget_bytes)
    runtime = ChunkRuntime(model, plan, torch.device("cpu"), torch.float32, None, budget, state_factor=2)
    with runtime.step_context(training=True):
        loss = model(tokens).square().mean()
    loss.backward()
    runtime.finish_backward()
    assert runtime.stats["evictions"] > 0 and runtime.stats["gathers"] == plan.modelled_gathers
    assert 0 < budget.peak_bytes <= budget_bytes
    for name, p in reference.named_parameters():
        chunk, index = runtime.slot_of[id(dict(model.named_parameters())[name])]
        slot = chunk.slots[index]
        got = chunk.grad[slot.offset : slot.offset + slot.numel].view(slot.shape)
        torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-7)
    weights = runtime.full_state_dict()
    assert weights["wte.weight"] is weights["lm_head.weight"] or torch.equal(
        weights["wte.weight"], weights["lm_head.weight"]
    )
    runtime.remove()
    assert budget.used_bytes == 0
    torch.testing.assert_close(model(tokens), reference(tokens))  # plain parameters again


def test_evaluation_forward_reuses_the_cache_and_eviction_refuses_when_pinned_set_is_too_large():
    model, tokens, profile = _profiled_gpt2()
    plan = _plan(model, profile, None)
    runtime = ChunkRuntime(model, plan, torch.device("cpu"), torch.float32, None, DeviceMemoryBudget(None), 2)
    with torch.no_grad(), runtime.step_context(training=False):
        first = model(tokens)
    gathered = runtime.stats["gathers"]
    with torch.no_grad(), runtime.step_context(training=False):
        torch.testing.assert_close(model(tokens), first)
    assert runtime.stats["gathers"] == gathered  # everything stayed cached
    runtime.remove()
    plan.cache_blocks = 0
    runtime = ChunkRuntime(model, plan, torch.device("cpu"), torch.float32, None, DeviceMemoryBudget(None), 2)
    with pytest.raises(ElixirMemoryError, match="cannot gather chunk"), runtime.step_context(training=False):
        model(tokens)


# ---------------------------------------------------------------------- optimizer view
def test_sharded_param_groups_keep_groups_and_refuse_non_elementwise_optimizers():
    model, _, profile = _profiled_gpt2()
    plan = _plan(model, profile, None)
    runtime = ChunkRuntime(model, plan, torch.device("cpu"), torch.float32, None, DeviceMemoryBudget(None), 2)
    with pytest.raises(TypeError, match="element-wise optimizer"):
        ShardedParamGroups(torch.optim.LBFGS(model.parameters()), runtime)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}])
    shards = ShardedParamGroups(optimizer, runtime)
    covered = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert covered == sum(p.numel() for p in model.parameters())  # every element exactly once, no padding
    assert optimizer.param_groups[1]["weight_decay"] == 0.0 and len(shards.runs) < len(decay) + len(rest)
    with pytest.raises(ValueError, match="in no optimizer param group"):
        ShardedParamGroups(torch.optim.SGD(decay, lr=0.1), runtime)


# ---------------------------------------------------------------------- loss scaling, profiling, strategy surface
def test_loss_scaler_backs_off_on_overflow_and_grows_after_clean_steps():
    scaler = DynamicLossScaler(init_scale=8.0, growth_interval=2)
    assert scaler.found_overflow([torch.tensor([1.0, float("inf")])], group=None)
    assert not scaler.found_overflow([torch.ones(3)], group=None)
    scaler.update(True)
    assert scaler.scale == 4.0 and scaler.skipped_steps == 1
    scaler.update(False)
    scaler.update(False)
    assert scaler.scale == 8.0
    restored = DynamicLossScaler()
    restored.load_state_dict(scaler.state_dict())
    assert restored.state_dict() == scaler.state_dict()


def test_profiling_leaves_buffers_metrics_and_rng_untouched():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train_mean = torchmetrics.MeanMetric()
    stats = model[1].running_mean.clone()
    torch.manual_seed(3)
    rng = torch.get_rng_state()

    def step():
        out = model(torch.randn(5, 4)).sum()  # randn and dropout draw numbers
        model.train_mean.update(out.detach())
        return out

    profile = profile_forward(model, step)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.train_mean._update_count == 0 and float(model.train_mean.weight) == 0.0
    assert torch.equal(model[1].running_mean, stats) and model[1].num_batches_tracked.item() == 0
    assert profile.module_calls == [["0.weight", "0.bias"], ["1.weight", "1.bias"], ["3.weight", "3.bias"]]
    assert profile.activation_bytes > 0


def test_strategy_names_arguments_and_precision_mapping():
    assert {"elixir", "elixir_cpu_offload"} <= set(StrategyRegistry)
    assert StrategyRegistry.get("elixir_cpu_offload").offload == "cpu"
    for kwargs, message in [
        ({"device_memory_limit": 1.5}, "fraction in \\(0, 1\\]"),
        ({"device_memory_limit": 0.0}, "fraction in \\(0, 1\\]"),
        ({"device_memory_limit": -1}, "positive bytes"),
        ({"offload": "disk"}, "`offload` must be one of"),
        ({"policy": {"experts": "sharded"}}, "must be one of"),
        ({"chunk_size": 0}, "`chunk_size` must be a positive integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            ElixirStrategy(**kwargs)
    assert ElixirPrecision.from_plugin(Precision()).precision == "32-true"
    assert ElixirPrecision.from_plugin(MixedPrecision("bf16-mixed", "cpu")).compute_dtype is torch.bfloat16
    with pytest.raises(ValueError, match="supports"):
        ElixirPrecision("64-true")
    assert ElixirStrategy(device_memory_limit=13500000.0).device_memory_limit == 13500000  # from a YAML parser
    strategy = ElixirStrategy()
    strategy.precision_plugin = MixedPrecision("bf16-mixed", "cpu")
    assert isinstance(strategy.precision_plugin, ElixirPrecision)


def test_hardware_profile_round_trips():
    assert HardwareProfile.from_dict(HARDWARE.to_dict()) == HARDWARE
