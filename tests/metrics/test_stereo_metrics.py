"""Tests for the stereo metrics: class vs functional vs an independent NumPy reference, edge cases, and a real
two-process gloo DDP run in which the mean of per-rank means differs from the true value."""

from __future__ import annotations

import doctest
import math
import socket
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lightning_hpml.metrics.bad_pixel
import lightning_hpml.metrics.d1
import lightning_hpml.metrics.epe
import lightning_hpml.metrics.stereo
from lightning_hpml.metrics import (
    BadPixelRate,
    D1Error,
    EndPointError,
    bad_pixel_metric_name,
    bad_pixel_rate,
    d1_error,
    end_point_error,
    stereo_metric_collection,
)

COLLECTION_KEYS = {"epe", "d1_all", "bad_1px", "bad_2px", "bad_3px"}


# --------------------------------------------------------------------------------------------------------------------
# Independent NumPy reference (written from the definitions, not from the implementation).
# --------------------------------------------------------------------------------------------------------------------
def np_epe(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    errors = [abs(float(p) - float(t)) for p, t, v in zip(pred.ravel(), target.ravel(), valid.ravel()) if v]
    return sum(errors) / len(errors) if errors else math.nan


def np_bad(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    err = np.abs(pred - target)[valid]  # float32 arithmetic, as the metric does for float32 inputs
    return float(np.count_nonzero(err > threshold)) / err.size if err.size else math.nan


def np_d1(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    err = np.abs(pred - target)[valid]
    gt = np.abs(target[valid]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        outlier = (err > 3.0) & (err / gt > 0.05)  # the KITTI devkit's formulation, with a division
    return float(np.count_nonzero(outlier)) / err.size if err.size else math.nan


def np_all(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    return {
        "epe": np_epe(pred, target, valid),
        "d1_all": np_d1(pred, target, valid),
        "bad_1px": np_bad(pred, target, valid, 1.0),
        "bad_2px": np_bad(pred, target, valid, 2.0),
        "bad_3px": np_bad(pred, target, valid, 3.0),
    }


def make_batch(
    rng: np.random.Generator, shape: tuple[int, ...], noise_px: float, valid_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random disparity ground truth in [0.5, 120) px, prediction = gt + Laplace noise, random valid mask."""
    target = rng.uniform(0.5, 120.0, size=shape).astype(np.float32)
    pred = (target + rng.laplace(0.0, noise_px, size=shape)).astype(np.float32)
    valid = rng.random(shape) < valid_fraction
    return pred, target, valid


def concat(batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate([b[i].ravel() for b in batches]) for i in range(3))


def tensors(batch: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in batch)


FUNCTIONAL = {
    "epe": end_point_error,
    "d1_all": d1_error,
    "bad_1px": lambda p, t, v: bad_pixel_rate(p, t, v, threshold=1.0),
    "bad_2px": lambda p, t, v: bad_pixel_rate(p, t, v, threshold=2.0),
    "bad_3px": lambda p, t, v: bad_pixel_rate(p, t, v, threshold=3.0),
}
CLASSES = {
    "epe": EndPointError,
    "d1_all": D1Error,
    "bad_1px": lambda: BadPixelRate(1.0),
    "bad_2px": lambda: BadPixelRate(2.0),
    "bad_3px": lambda: BadPixelRate(threshold=3.0),
}


# --------------------------------------------------------------------------------------------------------------------
# Class vs functional vs reference.
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(COLLECTION_KEYS))
@pytest.mark.parametrize("seed", [0, 1])
def test_class_functional_and_reference_agree(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    specs = [((2, 1, 12, 16), 0.8, 0.9), ((3, 10, 7), 4.0, 0.3), ((9, 11), 12.0, 0.6), ((1, 1, 5, 5), 2.0, 0.05)]
    batches = [make_batch(rng, *spec) for spec in specs]
    metric = CLASSES[name]()
    for batch in batches:
        p, t, v = tensors(batch)
        metric.update(p, t, v)
        # Per batch, the functional form equals the reference.
        assert FUNCTIONAL[name](p, t, v).item() == pytest.approx(np_all(*batch)[name], rel=1e-6, nan_ok=True)
    expected = np_all(*concat(batches))[name]
    p_all, t_all, v_all = (torch.from_numpy(x).reshape(1, -1) for x in concat(batches))  # one (H=1, W=N) map
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    assert FUNCTIONAL[name](p_all, t_all, v_all).item() == pytest.approx(expected, rel=1e-6)
    assert metric.compute().dtype == torch.get_default_dtype()
    # Accumulation is over pixels, not a mean of batch means (the data are built so the two differ).
    batch_means = [np_all(*b)[name] for b in batches]
    assert abs(np.nanmean(batch_means) - expected) > 1e-3


def test_collection_keys_prefix_and_values() -> None:
    rng = np.random.default_rng(3)
    batches = [make_batch(rng, (2, 1, 10, 10), noise, frac) for noise, frac in [(0.7, 0.8), (5.0, 0.5), (2.0, 1.0)]]
    metrics = stereo_metric_collection(prefix="val/")
    assert set(metrics.keys(keep_base=False)) == {f"val/{k}" for k in COLLECTION_KEYS}
    for batch in batches:
        metrics.update(*tensors(batch))
    result = metrics.compute()
    expected = np_all(*concat(batches))
    assert set(result) == {f"val/{k}" for k in COLLECTION_KEYS}
    for key, value in expected.items():
        assert result[f"val/{key}"].item() == pytest.approx(value, rel=1e-6), key
    assert result["val/bad_1px"] > result["val/bad_2px"] > result["val/bad_3px"] > 0


def test_collection_not_merged_after_a_perfect_first_batch() -> None:
    """torchmetrics compute groups would merge the bad-pixel rates if their states matched after batch 1."""
    rng = np.random.default_rng(4)
    perfect_target = rng.uniform(1, 50, size=(1, 1, 6, 6)).astype(np.float32)
    perfect = (perfect_target.copy(), perfect_target, np.ones_like(perfect_target, dtype=bool))
    noisy = make_batch(rng, (1, 1, 20, 20), 2.0, 1.0)
    metrics = stereo_metric_collection()
    for batch in (perfect, noisy):
        metrics.update(*tensors(batch))
    result = metrics.compute()
    expected = np_all(*concat([perfect, noisy]))
    for key, value in expected.items():
        assert result[key].item() == pytest.approx(value, rel=1e-6), key
    assert len({round(result[k].item(), 6) for k in ("bad_1px", "bad_2px", "bad_3px")}) == 3


def test_collection_custom_thresholds_and_duplicate_names() -> None:
    metrics = stereo_metric_collection(bad_pixel_thresholds=(0.5, 4))
    assert set(metrics.keys()) == {"epe", "d1_all", "bad_0p5px", "bad_4px"}
    assert bad_pixel_metric_name(2.0) == "bad_2px"
    with pytest.raises(ValueError, match="bad_3px"):
        stereo_metric_collection(bad_pixel_thresholds=(3, 3.0))


@pytest.mark.parametrize("layout", ["b1hw", "bhw", "hw"])
def test_layouts_give_the_same_values(layout: str) -> None:
    rng = np.random.default_rng(5)
    pred, target, valid = make_batch(rng, (1, 1, 9, 13), 3.0, 0.7)
    reshape = {"b1hw": (1, 1, 9, 13), "bhw": (1, 9, 13), "hw": (9, 13)}[layout]
    p, t, v = (torch.from_numpy(x.reshape(reshape)) for x in (pred, target, valid))
    expected = np_all(pred, target, valid)
    for name, fn in FUNCTIONAL.items():
        assert fn(p, t, v).item() == pytest.approx(expected[name], rel=1e-6)


def test_default_valid_is_finite_target() -> None:
    target = torch.tensor([[1.0, math.inf], [math.nan, 4.0]])
    pred = torch.tensor([[2.0, 100.0], [100.0, 10.0]])
    assert end_point_error(pred, target).item() == pytest.approx((1.0 + 6.0) / 2)
    assert bad_pixel_rate(pred, target, threshold=3.0).item() == pytest.approx(0.5)
    assert d1_error(pred, target).item() == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------------------------------
# Edge cases and errors.
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(COLLECTION_KEYS))
def test_zero_valid_pixels_is_nan_and_contributes_nothing(name: str) -> None:
    rng = np.random.default_rng(6)
    pred, target, _ = make_batch(rng, (2, 1, 4, 4), 5.0, 1.0)
    none_valid = np.zeros_like(pred, dtype=bool)
    p, t, v0 = tensors((pred, target, none_valid))
    assert math.isnan(FUNCTIONAL[name](p, t, v0).item())

    metric = CLASSES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        assert math.isnan(metric.compute().item())
    metric.update(p, t, v0)
    assert math.isnan(metric.compute().item())
    good = make_batch(rng, (1, 1, 8, 8), 3.0, 0.5)
    metric.update(*tensors(good))
    metric.update(p, t, v0)
    assert metric.compute().item() == pytest.approx(np_all(*good)[name], rel=1e-6)


def test_shape_mismatch_names_both_shapes() -> None:
    pred, target = torch.zeros(2, 1, 4, 5), torch.zeros(2, 4, 5)
    for fn in FUNCTIONAL.values():
        with pytest.raises(ValueError, match=r"\(2, 1, 4, 5\).*\(2, 4, 5\)"):
            fn(pred, target, None)
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 5\).*\(2, 4, 5\)"):
        EndPointError().update(pred, target)
    with pytest.raises(ValueError, match=r"valid \(4, 5\) and target \(2, 1, 4, 5\)"):
        d1_error(pred, pred, torch.ones(4, 5, dtype=torch.bool))


def test_bad_layout_and_types_are_refused() -> None:
    two_channels = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\)"):
        end_point_error(two_channels, two_channels)
    with pytest.raises(ValueError, match=r"got \(16,\)"):
        end_point_error(torch.zeros(16), torch.zeros(16))
    with pytest.raises(TypeError, match="torch.bool, got torch.float32"):
        bad_pixel_rate(torch.zeros(3, 3), torch.zeros(3, 3), torch.ones(3, 3))
    with pytest.raises(TypeError, match="torch.bool, got torch.uint8"):
        BadPixelRate().update(torch.zeros(3, 3), torch.zeros(3, 3), torch.ones(3, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="numpy"):
        end_point_error(np.zeros((3, 3)), torch.zeros(3, 3))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan])
def test_non_positive_thresholds_are_refused(bad: float) -> None:
    p = t = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="threshold"):
        bad_pixel_rate(p, t, threshold=bad)
    with pytest.raises(ValueError, match="`threshold`"):
        BadPixelRate(threshold=bad)
    with pytest.raises(ValueError, match="`abs_threshold`"):
        D1Error(abs_threshold=bad)
    with pytest.raises(ValueError, match="`rel_threshold`"):
        d1_error(p, t, rel_threshold=bad)
    with pytest.raises(ValueError, match="threshold"):
        stereo_metric_collection(bad_pixel_thresholds=(1.0, bad))


def test_boolean_threshold_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="real number"):
        BadPixelRate(threshold=True)  # type: ignore[arg-type]


def test_threshold_boundaries() -> None:
    target = torch.tensor([[100.0, 100.0, 10.0, 10.0]])
    pred = torch.tensor([[103.0, 106.0, 13.0, 13.5]])  # errors 3 (not > 3), 6 (> 3 and > 5), 3, 3.5 (> 3 and > 0.5)
    assert bad_pixel_rate(pred, target, threshold=3.0).item() == pytest.approx(0.5)
    assert d1_error(pred, target).item() == pytest.approx(0.5)
    # With a 10 % relative threshold, the 6 px error on 100 px is no longer an outlier.
    assert d1_error(pred, target, rel_threshold=0.10).item() == pytest.approx(0.25)
    assert d1_error(pred, target, abs_threshold=5.0).item() == pytest.approx(0.25)
    # A true disparity of 0 marked valid: any error above 3 px is an outlier, an exact match is not.
    assert d1_error(torch.tensor([[4.0, 0.0]]), torch.zeros(1, 2)).item() == pytest.approx(0.5)


def test_non_finite_predictions_are_reported_not_dropped() -> None:
    target = torch.full((1, 4), 10.0)
    pred = torch.tensor([[10.0, math.nan, math.inf, 10.5]])
    assert not math.isfinite(end_point_error(pred, target).item())
    assert bad_pixel_rate(pred, target, threshold=1.0).item() == pytest.approx(0.5)
    assert d1_error(pred, target).item() == pytest.approx(0.5)


def test_epe_is_differentiable_and_half_precision_inputs_work() -> None:
    pred = torch.tensor([[1.0, 5.0, 2.0]], requires_grad=True)
    target = torch.tensor([[2.0, 3.0, 0.0]])
    valid = torch.tensor([[True, True, False]])
    end_point_error(pred, target, valid).backward()
    assert pred.grad is not None
    assert pred.grad.tolist() == [[-0.5, 0.5, 0.0]]

    rng = np.random.default_rng(7)
    p, t, v = tensors(make_batch(rng, (1, 1, 16, 16), 2.0, 0.8))
    assert end_point_error(p.half(), t, v).item() == pytest.approx(end_point_error(p, t, v).item(), rel=1e-2)
    assert EndPointError.is_differentiable and not D1Error.is_differentiable
    assert EndPointError.higher_is_better is False and EndPointError.full_state_update is False


def test_reset_clears_state() -> None:
    metric = D1Error()
    metric.update(torch.tensor([[20.0]]), torch.tensor([[10.0]]))
    assert metric.compute().item() == 1.0
    metric.reset()
    metric.update(torch.tensor([[10.0]]), torch.tensor([[10.0]]))
    assert metric.compute().item() == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_collection_matches_cpu_reference() -> None:
    rng = np.random.default_rng(8)
    batches = [make_batch(rng, (2, 1, 16, 24), noise, 0.7) for noise in (0.5, 4.0)]
    metrics = stereo_metric_collection(prefix="test/").to("cuda")
    for batch in batches:
        p, t, v = (x.cuda() for x in tensors(batch))
        metrics.update(p, t, v)
    result = metrics.compute()
    for key, value in np_all(*concat(batches)).items():
        assert result[f"test/{key}"].device.type == "cuda"
        assert result[f"test/{key}"].item() == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize(
    "module",
    [
        lightning_hpml.metrics.epe,
        lightning_hpml.metrics.bad_pixel,
        lightning_hpml.metrics.d1,
        lightning_hpml.metrics.stereo,
    ],
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------------------------------------------------
# Real DDP: two processes, gloo on localhost, different data and different valid counts per rank.
# --------------------------------------------------------------------------------------------------------------------
WORLD_SIZE = 2


def ddp_rank_batches(rank: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rank 0: few valid pixels, small errors. Rank 1: many valid pixels, large errors, plus an all-invalid batch.

    So the mean of per-rank means is far from the value over the union of pixels.
    """
    rng = np.random.default_rng(100 + rank)
    if rank == 0:
        return [make_batch(rng, (1, 1, 8, 8), 0.4, 0.15), make_batch(rng, (2, 8, 6), 0.6, 0.1)]
    batches = [make_batch(rng, (2, 1, 24, 24), 6.0, 0.9), make_batch(rng, (1, 30, 20), 3.0, 0.95)]
    empty = make_batch(rng, (1, 1, 5, 5), 1.0, 0.0)
    assert not empty[2].any()
    return batches + [empty]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=60),
    )
    try:
        collection = stereo_metric_collection(prefix="val/")
        singles = {"epe": EndPointError(), "d1_all": D1Error(), "bad_3px": BadPixelRate(3.0)}
        local = stereo_metric_collection(prefix="local/", sync_on_compute=False)  # this rank's own values
        for batch in ddp_rank_batches(rank):
            p, t, v = tensors(batch)
            collection.update(p, t, v)
            local.update(p, t, v)
            for metric in singles.values():
                metric.update(p, t, v)
        result = {key: value.item() for key, value in collection.compute().items()}
        result.update({f"single/{key}": metric.compute().item() for key, metric in singles.items()})
        result.update({key: value.item() for key, value in local.compute().items()})
        # After compute() the states are back to this rank's own values: a second compute syncs again, identically.
        result["val/epe_again"] = collection["epe"].compute().item()
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_ddp_gloo_two_processes_reduce_over_the_union(tmp_path: Path) -> None:
    per_rank = [ddp_rank_batches(rank) for rank in range(WORLD_SIZE)]
    expected = np_all(*concat([b for batches in per_rank for b in batches]))
    rank_means = [np_all(*concat(batches)) for batches in per_rank]
    valid_counts = [int(concat(batches)[2].sum()) for batches in per_rank]
    assert valid_counts[0] * 5 < valid_counts[1]  # very different valid counts per rank
    for key in ("epe", "d1_all", "bad_3px"):  # the test data really do separate "union" from "mean of means"
        assert abs((rank_means[0][key] + rank_means[1][key]) / 2 - expected[key]) > 0.02, key

    mp.spawn(_ddp_worker, args=(WORLD_SIZE, _free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)

    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    for rank, result in enumerate(results):
        for key, value in expected.items():
            assert result[f"val/{key}"] == pytest.approx(value, rel=1e-5), (rank, key)
            assert result[f"local/{key}"] == pytest.approx(rank_means[rank][key], rel=1e-5), (rank, key)
        for key in ("epe", "d1_all", "bad_3px"):
            assert result[f"single/{key}"] == pytest.approx(expected[key], rel=1e-5), (rank, key)
        assert result["val/epe_again"] == pytest.approx(expected["epe"], rel=1e-5)


def test_metric_reset_inside_inference_mode_can_update_outside_it():
    # Lightning's validate() runs under inference_mode; a later fit() must still be able to update the states.
    from lightning_hpml.metrics import stereo_metric_collection

    metrics = stereo_metric_collection(prefix="val/")
    pred, target = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    valid = torch.ones_like(target, dtype=torch.bool)
    with torch.inference_mode():
        metrics.update(pred, target, valid)
        metrics.compute()
        metrics.reset()
    with torch.no_grad():
        metrics.update(pred, target, valid)
    assert torch.isclose(metrics.compute()["val/epe"], (pred - target).abs().mean())
