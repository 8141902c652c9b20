"""``LayerwiseSparseReducer`` in a one-process Gloo group: AMP loss scale, state round trip and clear errors."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.distributed as dist
from torch import nn

from lightning_hpml.strategies.lags import PAPER_SETTINGS, LAGSStrategy, LayerwiseSparseReducer


@pytest.fixture
def world_of_one():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def make_reducer(model: nn.Module, **settings) -> LayerwiseSparseReducer:
    """The algorithm as the paper states it (``PAPER_SETTINGS``), which these tests check, with ``settings`` on top;
    the defaults add the rest (last tests)."""
    return LayerwiseSparseReducer(model, **{**PAPER_SETTINGS, **settings})


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def backward(model: nn.Module, scale: float = 1.0, seed: int = 0) -> None:
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed))
    model.zero_grad(set_to_none=True)
    (model(x).pow(2).mean() * scale).backward()


def test_loss_scale_keeps_residuals_in_gradient_units(world_of_one):
    model = make_model()
    reducer = make_reducer(model, density=0.25, adaptive=False, group_threshold=0)
    backward(model, seed=1)
    reducer.finish()
    residual_before = {k: v.clone() for k, v in reducer.state_dict()["residuals"].items()}

    unscaled = make_model()
    unscaled.load_state_dict(model.state_dict())
    backward(unscaled, seed=2)
    reducer.grad_scale = 8.0
    backward(model, scale=8.0, seed=2)
    reducer.finish()
    residual_after = reducer.state_dict()["residuals"]
    for name, param in model.named_parameters():
        accumulated = dict(unscaled.named_parameters())[name].grad.flatten() + residual_before[name]
        sent = param.grad.flatten() / 8.0  # what the optimizer sees, unscaled
        torch.testing.assert_close(sent + residual_after[name], accumulated, rtol=0, atol=1e-6)
        assert torch.count_nonzero(sent) == max(1, round(0.25 * param.numel()))


@pytest.mark.parametrize("density", [1.0, 0.25])
def test_gradients_become_views_of_the_group_buffer_and_zero_grad_in_place_gives_the_same_updates(
    world_of_one, density
):
    # finish() hands out views of the group buffer instead of copying; with zero_grad(set_to_none=False) autograd
    # then accumulates straight into that buffer. Both ways must send and apply the same gradients.
    runs = {}
    for set_to_none in (True, False):
        model = make_model()
        reducer = make_reducer(model, density=density, adaptive=False, group_threshold=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for seed in range(4):
            x = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed))
            optimizer.zero_grad(set_to_none=set_to_none)
            model(x).pow(2).mean().backward()
            reducer.finish()
            optimizer.step()
        buffers = {group.flat.untyped_storage().data_ptr() for group in reducer.groups}
        assert all(param.grad.untyped_storage().data_ptr() in buffers for param in model.parameters())
        runs[set_to_none] = (model.state_dict(), reducer.state_dict()["residuals"])
    for name, value in runs[True][0].items():
        torch.testing.assert_close(runs[False][0][name], value, rtol=0, atol=0)
    for name, value in runs[True][1].items():
        torch.testing.assert_close(runs[False][1][name], value, rtol=0, atol=0)


def test_overflowed_step_leaves_residuals_untouched(world_of_one):
    model = make_model()
    reducer = make_reducer(model, density=0.25, adaptive=False, group_threshold=0)
    backward(model)
    reducer.finish()
    before = {k: v.clone() for k, v in reducer.state_dict()["residuals"].items()}
    reducer.grad_scale = 65536.0
    backward(model, scale=float("inf"))
    reducer.finish()  # the AMP scaler would skip this step
    for name, residual in reducer.state_dict()["residuals"].items():
        assert torch.equal(residual, before[name])


def test_state_round_trip_and_mismatch_errors(world_of_one):
    model = make_model()
    reducer = make_reducer(model, density=0.1, adaptive=False, group_threshold=100)
    for seed in range(3):
        backward(model, seed=seed)
        reducer.finish()
    state = reducer.gather_state_dict()
    assert isinstance(state["residuals"], list) and len(state["residuals"]) == 1

    fresh = make_reducer(model, density=0.1, adaptive=False, group_threshold=0)
    fresh.load_state_dict(state)
    assert fresh.step == 3 and [g.names for g in fresh.groups] == [g.names for g in reducer.groups]
    for name, residual in reducer.state_dict()["residuals"].items():
        assert torch.equal(fresh.state_dict()["residuals"][name], residual)

    with pytest.raises(ValueError, match="saved with 4 processes but this run has 1"):
        fresh.load_state_dict({**state, "world_size": 4})
    with pytest.raises(ValueError, match=r"missing \['2.bias'\]"):
        fresh.load_state_dict({**state, "group_names": [[n for n in g if n != "2.bias"] for g in state["group_names"]]})


def test_unused_parameter_and_double_backward_are_clear_errors(world_of_one):
    model = make_model()
    reducer = make_reducer(model, density=0.5, adaptive=False)
    model.zero_grad(set_to_none=True)
    model[0](torch.randn(2, 8)).sum().backward()  # the last layer gets no gradient
    with pytest.raises(RuntimeError, match=r"\['2.bias', '2.weight'\] received no gradient"):
        reducer.finish()

    x = torch.randn(2, 8)
    loss = model(x).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="became final twice"):
        loss.backward()


def test_no_sync_accumulates_locally_and_finish_without_backward_is_a_no_op(world_of_one):
    model = make_model()
    reducer = make_reducer(model, density=1.0, adaptive=False)
    assert reducer.finish() is None
    with reducer.no_sync():
        backward(model)
    assert reducer.finish() is None  # nothing was exchanged
    first = [p.grad.clone() for p in model.parameters()]
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    model(x).pow(2).mean().backward()  # second micro-batch, same data: gradients double
    stats = reducer.finish()
    assert stats is not None and stats.density == 1.0 and reducer.step == 1
    for grad, before in zip((p.grad for p in model.parameters()), first, strict=True):
        torch.testing.assert_close(grad, 2 * before)


def test_density_warmup_follows_the_schedule_then_the_fixed_density(world_of_one):
    model = make_model()  # groups (threshold 0): 2.bias 2, 2.weight 32, 0.bias 16, 0.weight 128 (backward order)
    reducer = make_reducer(model, density=0.05, adaptive=False, group_threshold=0, density_warmup_steps=3)
    sent = []
    for step in range(5):
        backward(model, seed=step)
        stats = reducer.finish()
        sent.append(round(stats.density * sum(g.numel for g in reducer.groups)))
    expected = [
        sum(max(1, math.ceil(0.05 ** (min(step, 3) / 3) * g.numel)) for g in reducer.groups) for step in range(5)
    ]
    assert sent == expected
    assert sent[0] == 178 and sent[0] > sent[1] > sent[2] > sent[3] == sent[4]
    with pytest.raises(ValueError, match="density_warmup_steps >= 0"):
        make_reducer(model, density=0.05, adaptive=False, density_warmup_steps=-1)


def test_dense_exchange_sends_a_residual_left_by_sparse_steps(world_of_one):
    model = make_model()
    reducer = make_reducer(model, density=0.25, adaptive=False, group_threshold=0)
    backward(model, seed=1)
    reducer.finish()
    residuals = {k: v.clone() for k, v in reducer.state_dict()["residuals"].items()}
    assert all(g.has_residual for g in reducer.groups) and any(r.any() for r in residuals.values())

    reference = make_model()
    reference.load_state_dict(model.state_dict())
    backward(reference, seed=2)
    reducer.densities = [1.0] * len(reducer.groups)  # as a new plan that makes every group dense
    backward(model, seed=2)
    assert reducer.finish().density == 1.0
    for (name, param), expected in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(param.grad.flatten(), expected.grad.flatten() + residuals[name], rtol=0, atol=1e-6)
    assert not any(r.any() for r in reducer.state_dict()["residuals"].values())
    assert not any(g.has_residual for g in reducer.groups)


def test_tensors_below_dense_below_are_sent_dense_with_no_residual(world_of_one):
    model = make_model()  # 2.bias 2, 2.weight 32, 0.bias 16, 0.weight 128 (backward order)
    reference = make_model()
    reducer = make_reducer(model, density=0.05, adaptive=False, group_threshold=0, dense_below=20)
    dense_names = {name for group in reducer.groups if group.always_dense for name in group.names}
    assert dense_names == {"2.bias", "0.bias"}
    for seed in range(3):
        backward(reference, seed=seed)
        backward(model, seed=seed)
        stats = reducer.finish()
    assert round(stats.density * 178) == 2 + 16 + 2 + 7  # the two biases whole, 5 % of 32 and 128 rounded up
    residuals = reducer.state_dict()["residuals"]
    for (name, param), expected in zip(model.named_parameters(), reference.parameters(), strict=True):
        if name in dense_names:
            torch.testing.assert_close(param.grad, expected.grad, rtol=0, atol=0)
            assert not residuals[name].any()
        else:
            assert residuals[name].any()
    with pytest.raises(ValueError, match="dense_below and dense_group_threshold >= 0"):
        make_reducer(model, density=0.05, adaptive=False, dense_below=-1)


def test_error_feedback_is_exact_on_the_cpu_prefilter_path_with_a_loss_scale(world_of_one):
    # 65,536 elements and up at density <= 0.1 take the sampled pre-filter; one-tensor groups read .grad in place
    torch.manual_seed(0)
    model, reference = nn.Linear(512, 256), nn.Linear(512, 256)
    reference.load_state_dict(model.state_dict())
    reducer = make_reducer(
        model, density=0.05, adaptive=False, dense_below=1000, dense_below_bits=8, sparse_values="bfloat16"
    )
    assert sorted(g.numel for g in reducer.groups) == [256, 131072]
    for seed, scale in ((0, 1.0), (1, 4.0), (2, 4.0)):
        x = torch.randn(16, 512, generator=torch.Generator().manual_seed(seed))
        before = reducer.state_dict()["residuals"]
        reducer.grad_scale = scale  # before backward: the hooks send as soon as a gradient is final
        for net, factor in ((reference, 1.0), (model, scale)):
            net.zero_grad(set_to_none=True)
            (net(x).pow(2).mean() * factor).backward()
        assert reducer.finish().density == pytest.approx((256 + 6554) / (256 + 131072))
        after = reducer.state_dict()["residuals"]
        for name, param in model.named_parameters():
            expected = reference.get_parameter(name).grad.flatten() + before[name]
            torch.testing.assert_close(param.grad.flatten() / scale + after[name], expected, rtol=0, atol=1e-7)
        assert torch.count_nonzero(model.weight.grad) == 6554


@pytest.mark.parametrize(("bits", "values"), [(8, "float32"), (1, "bfloat16"), (32, "bfloat16")])
def test_quantized_small_tensors_and_bf16_values_keep_error_feedback_exact(world_of_one, bits, values):
    # sent + new residual == gradient + old residual, with the loss scale on the last step (residual in gradient units)
    model = make_model()
    reference = make_model()
    reducer = make_reducer(
        model,
        density=0.1,
        adaptive=False,
        group_threshold=0,
        dense_below=20,
        dense_below_bits=bits,
        sparse_values=values,
    )
    dense_names = {name for group in reducer.groups if group.always_dense for name in group.names}
    assert dense_names == {"2.bias", "0.bias"}
    for seed, scale in ((0, 1.0), (1, 1.0), (2, 4.0)):
        before = reducer.state_dict()["residuals"]
        backward(reference, seed=seed)
        reducer.grad_scale = scale
        backward(model, seed=seed, scale=scale)
        reducer.finish()
        after = reducer.state_dict()["residuals"]
        for (name, param), expected in zip(model.named_parameters(), reference.parameters(), strict=True):
            sent = param.grad.flatten() / scale
            accumulated = expected.grad.flatten() + before[name]
            torch.testing.assert_close(sent + after[name], accumulated, rtol=0, atol=1e-6, msg=name)
            if name not in dense_names and values == "bfloat16":  # every sent value is a bf16 number
                assert torch.equal(sent, sent.bfloat16().float())
            if name in dense_names and bits == 8:  # every entry sent, to within half an int8 step
                assert after[name].abs().max() <= accumulated.abs().max() / 254 * (1 + 1e-5)
            if name in dense_names and bits == 1:  # every entry moves by the tensor's mean magnitude
                assert len(torch.unique(sent.abs())) == 1 and sent.abs()[0] > 0
    with pytest.raises(ValueError, match="dense_below_bits must be one of"):
        LayerwiseSparseReducer(model, dense_below_bits=4)
    with pytest.raises(ValueError, match="sparse_values must be one of"):
        LayerwiseSparseReducer(model, sparse_values="float16")


def test_defaults_warm_up_dense_then_send_large_layers_sparse_and_small_tensors_as_int8(world_of_one):
    # The defaults are the configuration measured to keep dense accuracy (benchmarks/README.md): a 96-step dense
    # warm-up, then 5 % of each tensor of >= 131,072 elements (bf16 values) and every small tensor as int8.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    reducer = LayerwiseSparseReducer(model, adaptive=False)
    kinds = {name: group.always_dense for group in reducer.groups for name in group.names}
    assert kinds == {"0.weight": False, "0.bias": True, "2.weight": True, "2.bias": True}
    assert reducer.dense_below_bits == 8 and reducer.sparse_value_dtype == torch.bfloat16
    densities = []
    for step in range(98):
        x = torch.randn(4, 512, generator=torch.Generator().manual_seed(step))
        model.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        densities.append(reducer.finish().density)
    small = 512 + 5120 + 10
    assert densities[0] == 1.0
    assert densities[1] > densities[48] > densities[95] > densities[96]
    assert densities[96] == densities[97] == pytest.approx((math.ceil(0.05 * 262144) + small) / (262144 + small))


def test_strategy_and_reducer_share_their_defaults():
    reducer_defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(LayerwiseSparseReducer).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    strategy_defaults = LAGSStrategy()._reducer_kwargs
    assert strategy_defaults == {name: reducer_defaults[name] for name in strategy_defaults}
