"""Latency-constrained sub-network search for a trained EASNet supernet.

The paper deploys sub-networks chosen for a device's latency budget "without additional training". This module
implements a simple, documented search (not the official evolutionary search with an accuracy predictor, which is
Once-for-All's ImageNet tooling and is not wired to stereo in the EASNet repository):

1. candidates = the given configs, or the smallest + largest sub-network and ``num_candidates`` random ones
   (deduplicated);
2. each candidate is extracted (:meth:`EASNet.extract_subnet`) and its latency measured on ``device`` (median of
   ``repeats`` forward passes of a ``(1, 3, H, W)`` pair after ``warmup`` passes);
3. among candidates within the budget, accuracy is obtained by, in order of preference: the ``accuracy`` callable
   (sub-net -> score, higher is better); or a validation pass on ``val_batches`` (score = -EPE, after re-estimating
   BatchNorm statistics on ``bn_batches`` when given); or, with neither, a PROXY: the parameter count of the
   sub-network (in the elastic search space larger sub-networks are the more accurate ones on average; the proxy
   ignores which dimension the capacity is spent on);
4. the best-scoring candidate is returned (ties: lower latency).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_hpml.modules.stereo.easnet.supernet import EASNet, EASNetSubnet, SubnetConfig, reestimate_bn

__all__ = ["SearchResult", "evaluate_epe", "measure_latency", "search_subnet"]


@dataclass
class SearchResult:
    """Outcome of :func:`search_subnet`."""

    config: SubnetConfig
    """The chosen architecture."""
    latency_ms: float
    """Its measured latency (median) on the search device."""
    accuracy: float
    """Its score (higher is better; ``-EPE`` for validation, parameter count for the proxy)."""
    accuracy_source: str
    """``"callable"``, ``"validation"`` or ``"proxy:params"``."""
    subnet: EASNetSubnet
    """The extracted plain sub-network (on the search device, eval mode)."""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    """Every candidate measured: ``config``, ``latency_ms``, ``within_budget``, ``accuracy`` (None if not scored)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_size: tuple[int, int],
    device: str | torch.device = "cpu",
    repeats: int = 5,
    warmup: int = 1,
) -> float:
    """Median forward latency (ms) of ``model`` on one ``(1, 3, H, W)`` stereo pair on ``device`` (eval mode)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"`repeats` must be >= 1 and `warmup` >= 0, got {repeats!r}, {warmup!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    left = torch.rand(1, 3, *input_size, device=device)
    right = torch.rand(1, 3, *input_size, device=device)
    try:
        for _ in range(warmup):
            model(left, right)
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(left, right)
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return statistics.median(times)


@torch.no_grad()
def evaluate_epe(model: nn.Module, batches: Iterable[dict[str, Any]]) -> float:
    """Mean end-point error of ``model`` over ``batches`` (dicts with left/right/disparity/valid), pixel-weighted."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    err, count = 0.0, 0
    try:
        for batch in batches:
            pred = model(batch["left"].to(device), batch["right"].to(device))["disparity"]
            target, valid = batch["disparity"].to(device), batch["valid"].to(device)
            err += (pred - target).abs()[valid].sum().item()
            count += int(valid.sum().item())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("`batches` contain no valid ground-truth pixel; EPE is undefined")
    return err / count


def _candidates(
    supernet: EASNet, candidates: Sequence[SubnetConfig] | None, num_candidates: int, seed: int
) -> list[SubnetConfig]:
    if candidates is not None:
        configs = list(candidates)
    else:
        rng = random.Random(seed)
        previous = supernet.active_config
        configs = [supernet.min_config, supernet.max_config]
        configs += [supernet.sample_active_subnet(rng=rng) for _ in range(num_candidates)]
        supernet.set_active_subnet(config=previous)
    unique, seen = [], set()
    for config in configs:
        key = config.canonical()
        if key not in seen:
            seen.add(key)
            unique.append(config)
    if not unique:
        raise ValueError("`candidates` is empty")
    return unique


def search_subnet(
    supernet: EASNet,
    latency_budget_ms: float,
    device: str | torch.device = "cpu",
    input_size: tuple[int, int] = (384, 768),
    candidates: Sequence[SubnetConfig] | None = None,
    num_candidates: int = 20,
    accuracy: Callable[[nn.Module], float] | None = None,
    val_batches: Iterable[dict[str, Any]] | None = None,
    bn_batches: Iterable[Any] | None = None,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> SearchResult:
    """Return the most accurate sub-network of ``supernet`` whose measured latency is within the budget.

    Args:
        supernet: A trained :class:`EASNet`.
        latency_budget_ms: Latency budget for one ``input_size`` pair (batch 1) on ``device``.
        device: Where latency is measured (and accuracy evaluated).
        input_size: ``(H, W)`` of the timing input; must be divisible by the supernet's ``size_divisor``.
        candidates: Configs to consider; default: smallest, largest and ``num_candidates`` random ones.
        num_candidates: Random candidates when ``candidates`` is None.
        accuracy: ``subnet -> score`` (higher is better); takes precedence over ``val_batches``.
        val_batches: Validation batches (re-iterable, e.g. a list or DataLoader); score = -EPE.
        bn_batches: Training batches for re-estimating BatchNorm statistics of each scored sub-network.
        repeats, warmup: Timing repetitions (median taken) and untimed warm-up passes.
        seed: Seed of the random candidates.

    Raises:
        ValueError: if the budget is not positive, the input size is not divisible, or no candidate fits the budget
            (the message gives the fastest latency measured).
    """
    if latency_budget_ms <= 0:
        raise ValueError(f"`latency_budget_ms` must be positive, got {latency_budget_ms!r}")
    if any(x % supernet.size_divisor for x in input_size):
        raise ValueError(f"`input_size` {input_size!r} must be divisible by {supernet.size_divisor}")
    device = torch.device(device)
    bn_list = list(bn_batches) if bn_batches is not None else None
    val_list = list(val_batches) if val_batches is not None else None
    if accuracy is not None:
        source = "callable"
    elif val_list is not None:
        source = "validation"
    else:
        source = "proxy:params"

    table: list[dict[str, Any]] = []
    best: tuple[float, float, SubnetConfig, EASNetSubnet] | None = None
    for config in _candidates(supernet, candidates, num_candidates, seed):
        subnet = supernet.extract_subnet(config).to(device)
        latency = measure_latency(subnet, input_size, device, repeats, warmup)
        row: dict[str, Any] = {"config": config, "latency_ms": latency, "within_budget": latency <= latency_budget_ms}
        row["accuracy"] = None
        table.append(row)
        if not row["within_budget"]:
            continue
        if bn_list:
            reestimate_bn(subnet, bn_list)
        if accuracy is not None:
            score = float(accuracy(subnet))
        elif val_list is not None:
            score = -evaluate_epe(subnet, val_list)
        else:
            score = float(sum(p.numel() for p in subnet.parameters()))
        row["accuracy"] = score
        if best is None or (score, -latency) > (best[0], -best[1]):
            best = (score, latency, config, subnet.eval())
    if best is None:
        fastest = min(row["latency_ms"] for row in table)
        raise ValueError(
            f"no candidate meets the {latency_budget_ms:.2f} ms budget on {device}; the fastest took {fastest:.2f} ms"
        )
    score, latency, config, subnet = best
    return SearchResult(config, latency, score, source, subnet, table)
