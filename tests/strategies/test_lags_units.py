"""LAGS building blocks: exact top-k with residual, grouping, alpha-beta fit and the density planner."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from lightning_hpml.strategies.lags import LinkCost, num_selected, plan_densities, select_topk_with_residual
from lightning_hpml.strategies.lags.cost_model import fit_line
from lightning_hpml.strategies.lags.groups import build_groups, split_by_threshold
from lightning_hpml.strategies.lags.planner import WIRE_BYTES_PER_SELECTED, warmup_density


@pytest.mark.parametrize("numel,k", [(1000, 10), (300_000, 3000), (300_000, 25_000), (300_000, 120_000), (70_000, 1)])
def test_topk_is_exact_and_residual_keeps_the_rest(numel, k):
    accumulated = torch.randn(numel, generator=torch.Generator().manual_seed(numel))
    residual = torch.empty(numel)
    values, indices = select_topk_with_residual(accumulated.clone(), residual, k, torch.Generator().manual_seed(1))
    assert indices.dtype == torch.int32 and values.numel() == indices.numel() == k
    expected = torch.topk(accumulated.abs(), k).indices
    assert set(indices.tolist()) == set(expected.tolist())
    rebuilt = residual.clone()
    rebuilt[indices.long()] += values
    assert torch.equal(rebuilt, accumulated)
    assert torch.count_nonzero(residual[indices.long()]) == 0


def test_topk_prefilter_falls_back_when_too_few_candidates_pass():
    # Many equal magnitudes: the sampled threshold admits everything at that magnitude or nothing; both stay exact.
    accumulated = torch.zeros(200_000)
    accumulated[:50] = torch.arange(1, 51, dtype=torch.float32)
    residual = torch.empty_like(accumulated)
    _, indices = select_topk_with_residual(accumulated, residual, 50)
    assert sorted(indices.tolist()) == list(range(50))


def test_candidate_indices_through_numpy_match_torch_nonzero():
    from lightning_hpml.strategies.lags.topk import _indices_at_least

    magnitude = torch.randn(100_003, generator=torch.Generator().manual_seed(3)).abs()
    magnitude[::7] = 1.25  # ties at the threshold count as candidates
    for values in (magnitude, magnitude.to(torch.bfloat16), magnitude.double()):
        for threshold in (1.25, 0.5, float(values[5]), 10.0):
            found = _indices_at_least(values, threshold)
            assert found.dtype == torch.int64
            assert torch.equal(found, (values >= threshold).nonzero().squeeze(1))


def test_topk_with_nans_still_sends_exactly_k():
    from lightning_hpml.strategies.lags.topk import take_topk_

    accumulated = torch.randn(100_000, generator=torch.Generator().manual_seed(6))
    accumulated[::1000] = float("nan")  # an AMP-overflowed step: the scaler skips it, the exchange must still match
    values, indices = take_topk_(accumulated, 500, torch.Generator().manual_seed(1))
    assert values.numel() == indices.numel() == 500


def test_topk_rounds_values_for_the_wire_and_keeps_the_error():
    from lightning_hpml.strategies.lags.topk import take_topk_

    original = torch.randn(100_000, generator=torch.Generator().manual_seed(7))
    residual = original.clone()
    values, indices = take_topk_(residual, 5000, torch.Generator().manual_seed(1), value_dtype=torch.bfloat16)
    assert values.dtype == torch.bfloat16
    chosen = indices.long()
    assert torch.equal(residual[chosen] + values.float(), original[chosen])  # exact: the error is representable
    untouched = torch.ones_like(original, dtype=torch.bool).index_fill_(0, chosen, False)
    assert torch.equal(residual[untouched], original[untouched])


def test_num_selected_rounds_up_and_validates():
    assert num_selected(1000, 0.001) == 1
    assert num_selected(1001, 0.001) == 2
    assert num_selected(10, 1.0) == 10
    with pytest.raises(ValueError, match="density must be in"):
        num_selected(10, 0.0)
    with pytest.raises(ValueError, match="density must be in"):
        num_selected(10, 1.5)


def test_split_by_threshold_merges_small_layers_in_order():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 100), nn.Linear(100, 2))
    named = list(model.named_parameters())[::-1]  # backward order: 2.bias, 2.weight, 1.bias, ...
    members = split_by_threshold(named, threshold=150)
    assert [[name for name, _ in group] for group in members] == [
        ["2.bias", "2.weight"],
        ["1.bias", "1.weight"],
        ["0.bias", "0.weight"],
    ]
    assert len(split_by_threshold(named, threshold=0)) == 6
    groups = build_groups(members)
    assert [g.numel for g in groups] == [202, 1100, 110]
    assert all(g.residual.dtype == torch.float32 and not g.residual.any() for g in groups)
    with pytest.raises(ValueError, match="group_threshold"):
        split_by_threshold(named, threshold=-1)
    with pytest.raises(ValueError, match="at least one trainable parameter"):
        split_by_threshold([], threshold=0)


def test_split_keeps_tensors_below_dense_below_apart_and_marks_their_groups_dense():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 100), nn.Linear(100, 2))
    named = list(model.named_parameters())[::-1]  # sizes 2, 200, 100, 1000, 10, 100
    members = split_by_threshold(named, threshold=150, dense_below=150)
    assert [[name for name, _ in group] for group in members] == [
        ["2.weight"],
        ["1.weight"],
        ["2.bias", "1.bias", "0.bias", "0.weight"],  # the small ones, merged only with each other
    ]
    groups = build_groups(members, dense_below=150)
    assert [g.always_dense for g in groups] == [False, False, True]
    assert split_by_threshold(named, threshold=150, dense_below=0) == split_by_threshold(named, threshold=150)
    assert not any(g.always_dense for g in build_groups(split_by_threshold(named, threshold=150)))
    with pytest.raises(ValueError, match="dense_below"):
        split_by_threshold(named, threshold=0, dense_below=-1)


def test_dense_group_threshold_closes_small_groups_sooner():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 100), nn.Linear(100, 2))
    named = list(model.named_parameters())[::-1]  # sizes 2, 200, 100, 1000, 10, 100
    members = split_by_threshold(named, threshold=150, dense_below=150, dense_threshold=100)
    assert [[name for name, _ in group] for group in members] == [
        ["2.weight"],
        ["2.bias", "1.bias"],  # 102 elements: closed here instead of holding 2.bias until the end of backward
        ["1.weight"],
        ["0.bias", "0.weight"],
    ]
    assert split_by_threshold(named, 150, 150, dense_threshold=None) == split_by_threshold(named, 150, 150)
    with pytest.raises(ValueError, match="dense_group_threshold"):
        split_by_threshold(named, threshold=150, dense_below=150, dense_threshold=-1)


def test_fit_line_recovers_alpha_beta_and_clamps():
    sizes = [1e3, 1e4, 1e5, 1e6]
    assert fit_line(sizes, [2e-4 + 8e-9 * s for s in sizes]) == pytest.approx((2e-4, 8e-9))
    alpha, beta = fit_line([1.0, 2.0], [1.0, 0.5])  # decreasing times: beta clamps at 0
    assert beta == 0.0 and alpha == pytest.approx(0.75)
    with pytest.raises(ValueError, match="differ"):
        fit_line([5.0, 5.0], [1.0, 2.0])


COST = LinkCost(alpha_allreduce=1e-3, beta_allreduce=8e-9, alpha_allgather=1e-3, beta_allgather=8e-9)


def test_planner_goes_dense_when_the_allreduce_hides_behind_the_remaining_backward():
    # Group 0 is ready at t=0 and the next one at t=1 s: a 1M-element dense allreduce (33 ms) hides.
    densities = plan_densities([1_000_000, 1000], [0.0, 1.0], COST, density_min=0.001)
    assert densities[0] == 1.0


def test_planner_sizes_the_density_to_the_window():
    numel, window = 1_000_000, 0.005
    densities = plan_densities([numel, 1000], [0.0, window], COST, density_min=0.0001)
    expected = (window - COST.alpha_allgather) / (COST.beta_allgather * WIRE_BYTES_PER_SELECTED * numel)
    assert densities[0] == pytest.approx(expected)
    assert COST.allgather_time(WIRE_BYTES_PER_SELECTED * densities[0] * numel) == pytest.approx(window)


def test_planner_caps_sparse_densities_at_density_max():
    # The window admits about 0.3 of the group but not a dense allreduce: capped at density_max.
    numel, window = 1_000_000, 0.020
    assert plan_densities([numel, 1000], [0.0, window], COST, 0.001)[0] == pytest.approx(0.296875)
    assert plan_densities([numel, 1000], [0.0, window], COST, 0.001, density_max=0.05)[0] == 0.05
    assert plan_densities([numel, 1000], [0.0, 1.0], COST, 0.001, density_max=0.05)[0] == 1.0  # dense still hides
    with pytest.raises(ValueError, match="density_min <= density_max"):
        plan_densities([1], [0.0], COST, density_min=0.1, density_max=0.05)


def test_planner_never_picks_a_sparse_exchange_that_sends_more_bytes_than_dense():
    # The window admits density 0.297: fewer bytes than a ring allreduce for 2 ranks (< 1/2), more for 4 (>= 1/4).
    numel, window = 1_000_000, 0.020
    assert plan_densities([numel, 1000], [0.0, window], COST, 0.001, world_size=2)[0] == pytest.approx(0.296875)
    assert plan_densities([numel, 1000], [0.0, window], COST, 0.001, world_size=4)[0] == 1.0


def test_planner_last_group_and_latency_bound_groups():
    # The last group has nothing left to hide behind: density_min, unless dense is no dearer than sparse.
    big_last = plan_densities([1000, 1_000_000], [0.0, 0.0], COST, density_min=0.01)
    assert big_last[1] == 0.01
    # A 10-element group where the allgather's latency exceeds the allreduce's: sparse saves nothing, so dense.
    slow_gather = LinkCost(alpha_allreduce=1e-3, beta_allreduce=8e-9, alpha_allgather=2e-3, beta_allgather=8e-9)
    assert plan_densities([1000, 10], [0.0, 0.0], slow_gather, density_min=0.01)[1] == 1.0
    with pytest.raises(ValueError, match="ready times"):
        plan_densities([1, 2], [0.0], COST, density_min=0.01)


def test_planner_keeps_always_dense_groups_dense_and_prices_their_allreduce():
    slow = LinkCost(alpha_allreduce=1e-3, beta_allreduce=8e-8, alpha_allgather=1e-3, beta_allgather=8e-8)  # 100 Mbit/s
    sizes, ready = [1_000_000, 1_000_000, 1000], [0.0, 0.05, 0.1]
    free = plan_densities(sizes, ready, slow, 0.001, density_max=0.05)
    forced = plan_densities(sizes, ready, slow, 0.001, density_max=0.05, always_dense=[True, False, False])
    assert free[:2] == [0.05, 0.05] and forced[0] == 1.0
    # the forced 0.32 s allreduce still holds the channel when the second group is ready: no window left for it
    assert forced[1] == 0.001
    # sent as int8 instead (1 MB allgather, 81 ms), the channel is free at 0.081 s: 19 ms left before the third group
    int8 = plan_densities(
        sizes,
        ready,
        slow,
        0.001,
        density_max=0.05,
        always_dense=[True, False, False],
        always_dense_bytes=[10**6, None, None],
    )
    assert int8[0] == 1.0 and int8[1] == pytest.approx((0.1 - 0.081 - 1e-3) / (8e-8 * 8 * 1_000_000))


def test_planner_carries_a_busy_channel_forward():
    # Group 0 takes the channel for longer than the gap to group 1, so group 1 gets a smaller window.
    numels = [1_000_000, 1_000_000, 1000]
    alone = plan_densities(numels[1:], [0.010, 0.020], COST, density_min=0.0001)[0]
    after_busy = plan_densities(numels, [0.0, 0.010, 0.020], COST, density_min=0.0001)[1]
    assert after_busy < alone


def test_sparse_message_round_trip_sums_every_rank():
    from lightning_hpml.strategies.lags.topk import add_gathered_sparse, pack_sparse

    messages = [
        pack_sparse(torch.tensor([1.5, -2.0]), torch.tensor([3, 0])),
        pack_sparse(torch.tensor([4.0, 1.0]), torch.tensor([3, 7])),
    ]
    out = add_gathered_sparse(torch.zeros(8), torch.cat(messages), world_size=2)
    assert out.tolist() == [-2.0, 0, 0, 5.5, 0, 0, 0, 1.0]


def test_warmup_density_decays_exponentially_from_dense_to_the_target():
    schedule = [warmup_density(0.01, step, 4) for step in range(7)]
    assert schedule[0] == 1.0
    assert schedule[2] == pytest.approx(0.1)  # halfway in steps, halfway in log density
    assert schedule[1] == pytest.approx(0.01**0.25) and schedule[3] == pytest.approx(0.01**0.75)
    assert schedule[4:] == [0.01, 0.01, 0.01]
    ratios = [b / a for a, b in itertools.pairwise(schedule[:5])]
    assert ratios == pytest.approx([0.01**0.25] * 4)  # the same factor every step
    assert warmup_density(0.05, 0, 0) == 0.05  # no warm-up
    assert warmup_density(1.0, 3, 10) == 1.0  # dense groups stay dense
    with pytest.raises(ValueError, match="warmup_steps >= 0"):
        warmup_density(0.01, 0, -1)
    with pytest.raises(ValueError, match="density must be in"):
        warmup_density(0.0, 0, 4)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("group_threshold", -1), ("dense_below", -1), ("density_warmup_steps", -1), ("dense_below_bits", 4)]
    + [("sparse_values", "float16")],
)
def test_strategy_rejects_bad_settings_at_construction(argument, value):
    # Before any process starts, not in setup on every rank.
    from lightning_hpml.strategies import LAGSStrategy

    with pytest.raises(ValueError, match=argument):
        LAGSStrategy(**{argument: value})


def test_bf16_sparse_message_round_trip():
    from lightning_hpml.strategies.lags.topk import add_gathered_sparse, pack_sparse, wire_bytes_per_selected

    assert wire_bytes_per_selected(torch.bfloat16) == 6 and wire_bytes_per_selected() == 8
    values = [torch.tensor([1.5, -2.0, 0.25]), torch.tensor([4.0, 1.0, -8.0])]
    indices = [torch.tensor([3, 0, 5]), torch.tensor([3, 7, 1])]
    messages = [pack_sparse(v.bfloat16(), i) for v, i in zip(values, indices, strict=True)]
    assert messages[0].numel() == 5  # 3 x 2 bytes of values padded to 2 words, then 3 index words
    out = add_gathered_sparse(torch.zeros(8), torch.cat(messages), 2, k=3, value_dtype=torch.bfloat16)
    assert out.tolist() == [-2.0, -8.0, 0, 5.5, 0, 0.25, 0, 1.0]
    with pytest.raises(ValueError, match="needs k"):
        add_gathered_sparse(torch.zeros(8), torch.cat(messages), 2, value_dtype=torch.bfloat16)


@pytest.mark.parametrize("bits", [8, 1])
def test_quantized_exchange_sums_every_rank_and_keeps_the_error_as_residual(bits):
    from lightning_hpml.strategies.lags.quantize import add_gathered_quantized, message_words, quantize_

    sizes = torch.tensor([5, 17, 3, 40])  # members of very different magnitudes: one scale each
    member_index = torch.repeat_interleave(torch.arange(4), sizes)
    magnitudes = torch.tensor([0.01, 1.0, 100.0, 0.5]).repeat_interleave(sizes)
    generator = torch.Generator().manual_seed(0)
    accumulated = [torch.randn(65, generator=generator) * magnitudes for _ in range(3)]
    residuals = [a.clone() for a in accumulated]
    messages = [quantize_(r, sizes.tolist(), bits) for r in residuals]
    assert all(m.dtype == torch.float32 and m.numel() == message_words(65, 4, bits) for m in messages)
    assert message_words(65, 4, bits) == 4 + (17 if bits == 8 else 3)
    out = add_gathered_quantized(torch.zeros(65), torch.cat(messages), 3, sizes.tolist(), bits, alpha=1 / 3)
    sent = sum(a - r for a, r in zip(accumulated, residuals, strict=True)) / 3
    torch.testing.assert_close(out, sent, rtol=0, atol=1e-5)  # error feedback: sent + residual == accumulated
    for a, r in zip(accumulated, residuals, strict=True):
        for member in range(4):
            share = r[member_index == member].abs().max() / a[member_index == member].abs().max()
            assert share < (0.01 if bits == 8 else 1.0)  # int8 keeps < 1 % of each member behind
    if bits == 1:  # every entry moves by its member's mean magnitude, in the direction of its sign
        first = accumulated[0] - residuals[0]
        assert torch.equal(first.sign(), accumulated[0].sign())
        assert len(torch.unique(first[:5].abs())) == 1
    with pytest.raises(ValueError, match="supports"):
        quantize_(torch.zeros(5), [5], bits=4)


def test_byte_rule_counts_the_value_width():
    from lightning_hpml.strategies.lags.planner import sparse_sends_more

    assert sparse_sends_more(0.5, 2) and not sparse_sends_more(0.49, 2)  # fp32: density 1 / P
    assert not sparse_sends_more(0.6, 2, bytes_per_selected=6) and sparse_sends_more(0.67, 2, bytes_per_selected=6)
