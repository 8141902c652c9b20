"""``Trainer(strategy=LAGSStrategy(...))`` on 2 and 4 Gloo processes: equivalence, error feedback, resume, failures.

Each case runs ``lags_worker.py`` (Lightning re-launches it for every rank) and compares what the ranks saved.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("lags_worker.py")


def run_worker(out: Path, *args: str, expect_ok: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, str(WORKER), str(out), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if expect_ok:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return run


def load_ranks(out: Path, world_size: int) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def assert_replicas_identical(ranks: list[dict]) -> None:
    """Every rank applied the same aggregated update (buffers differ: the last forward updates them locally)."""
    for other in ranks[1:]:
        assert max_difference(ranks[0]["params"], other["params"]) == 0.0


@pytest.mark.parametrize("world_size", [2, 4])
def test_density_one_matches_dense_ddp(tmp_path, world_size):
    common = ["--devices", str(world_size), "--max-steps", "8", "--momentum", "0.9"]
    run_worker(tmp_path / "ddp", "--strategy", "ddp", *common)
    run_worker(tmp_path / "lags", "--strategy", "lags", "--density", "1.0", *common)
    ddp, lags = load_ranks(tmp_path / "ddp", world_size), load_ranks(tmp_path / "lags", world_size)
    assert ddp[0]["global_step"] == lags[0]["global_step"] == 8
    assert max_difference(ddp[0]["initial"], lags[0]["params"]) > 1e-3  # training moved the weights
    assert max_difference(ddp[0]["params"], lags[0]["params"]) < 1e-6
    assert max_difference(ddp[0]["buffers"], lags[0]["buffers"]) < 1e-6  # BatchNorm stats broadcast from rank 0
    assert_replicas_identical(lags)
    assert lags[0]["logged"]["lags/density"] == 1.0


#: Biases and BatchNorm weights (< 64 elements) in int8, the rest top-k with bf16 values on the wire.
COMPACT = ("--dense-below", "64", "--dense-below-bits", "8", "--sparse-values", "bfloat16")


@pytest.mark.parametrize(("world_size", "wire"), [(2, ()), (4, ()), (2, COMPACT)], ids=["2", "4", "2-int8-bf16"])
def test_error_feedback_invariant_with_sparse_exchange(tmp_path, world_size, wire):
    """sum of applied updates + final residual == sum of dense gradients (SGD without momentum, constant lr)."""
    lr = 0.05
    run_worker(
        tmp_path,
        *("--devices", str(world_size), "--density", "0.05", "--max-steps", "6", "--accumulate", "2"),
        *("--lr", str(lr), *wire),
    )
    ranks = load_ranks(tmp_path, world_size)
    assert_replicas_identical(ranks)
    assert ranks[0]["reducer_step"] == 6  # one exchange per optimizer step, none on accumulation micro-batches
    for name, initial in ranks[0]["initial"].items():
        applied = (initial.double() - ranks[0]["params"][name].double()) / lr
        residual = torch.stack([r["residuals"][name].double().view_as(initial) for r in ranks]).mean(0)
        dense = torch.stack([r["grad_sum"][name].double() for r in ranks]).mean(0)
        assert float((applied + residual - dense).abs().max()) < 1e-5, name
    assert any(r["residuals"][name].abs().sum() > 0 for r in ranks for name in r["residuals"])
    logged = ranks[0]["logged"]
    assert logged["lags/bytes_sent"] < 0.5 * logged["lags/dense_bytes"]
    if not wire:
        assert logged["lags/density"] < 0.1
        return
    # TinyRegressor: 16x48, 48x24 and 24x4 weights top-k (0.05: 39 + 58 + 5 entries at 6 bytes); 48+48+48+24+4
    # bias/BatchNorm entries in 5 int8 tensors (one fp32 scale each, each padded to whole words, 192 bytes).
    assert logged["lags/bytes_sent"] == (world_size - 1) * (6 * (39 + 58 + 5) + 192)
    assert logged["lags/density"] == pytest.approx((39 + 58 + 5 + 172) / (768 + 1152 + 96 + 172))


@pytest.mark.parametrize(
    ("adaptive", "density_warmup_steps", "wire"),
    [(False, 0, ()), (True, 0, ()), (False, 6, ()), (False, 0, COMPACT)],
    ids=["fixed", "adaptive", "warmup", "int8-bf16"],
)
def test_resume_continues_exactly(tmp_path, adaptive, density_warmup_steps, wire):
    mode = ["--adaptive"] if adaptive else []
    common = ["--devices", "2", "--density", "0.05", "--momentum", "0.9", "--group-threshold", "64", *mode, *wire]
    common += ["--density-warmup-steps", str(density_warmup_steps)]
    run_worker(tmp_path / "full", *common, "--max-steps", "8", "--checkpoint-every", "4")
    checkpoints = sorted((tmp_path / "full" / "checkpoints").glob("*step=4.ckpt"))
    assert len(checkpoints) == 1, list((tmp_path / "full" / "checkpoints").iterdir())
    saved = torch.load(checkpoints[0], weights_only=False)["lags"]
    assert len(saved["residuals"]) == 2 and saved["step"] == 4
    run_worker(tmp_path / "resumed", *common, "--max-steps", "8", "--resume", str(checkpoints[0]))
    full, resumed = load_ranks(tmp_path / "full", 2), load_ranks(tmp_path / "resumed", 2)
    for a, b in zip(full, resumed, strict=True):
        assert b["global_step"] == 8 and b["reducer_step"] == 8
        assert a["densities"] == b["densities"] and a["group_names"] == b["group_names"]
        assert max_difference(a["params"], b["params"]) == 0.0
        assert max_difference(a["residuals"], b["residuals"]) == 0.0
        # The resumed run sent at each of steps 4..7 exactly what the uninterrupted run sent.
        assert b["step_densities"] == {s: d for s, d in a["step_densities"].items() if s >= 4}
    if adaptive:  # the plan made at step 3 came back from the checkpoint instead of being re-profiled
        assert saved["next_profile_start"] is None and saved["profiled_times"] is not None
    if density_warmup_steps:  # the checkpoint (step 4) fell inside the warm-up: dense first, then ever sparser
        densities = [full[0]["step_densities"][s] for s in range(8)]
        assert densities[0] == densities[1] == 1.0  # 0.05 ** (1 / 6) = 0.61 sends more bytes than dense on 2 ranks
        assert densities[1] > densities[2] > densities[3] > densities[4] > densities[5] > densities[6]
        assert densities[6] == densities[7] < 0.1


@pytest.mark.parametrize(("world_size", "fail_rank"), [(2, 1), (4, 2), (2, 0)])
def test_exception_on_one_rank_ends_every_rank(tmp_path, world_size, fail_rank):
    start = time.monotonic()
    run = run_worker(
        tmp_path,
        *("--devices", str(world_size), "--fail-rank", str(fail_rank), "--fail-step", "3", "--max-steps", "8"),
        # The process-group timeout also bounds the rendezvous: 4 ranks importing Lightning on 2 busy cores took
        # more than 30 s to connect once (a full parallel suite on a slow day). A peer's death is noticed at once
        # (its socket closes, or the launcher stops the others), so the timeout is only the hang guard.
        *("--timeout-s", "90"),
        expect_ok=False,
        timeout=300,
    )
    elapsed = time.monotonic() - start
    assert run.returncode != 0
    assert f"injected failure on rank {fail_rank} at step 3" in run.stderr
    if fail_rank != 0:
        # The survivors stop for a stated reason: their exchange fails with LAGSCommunicationError, or Lightning's
        # launcher on rank 0 notices the dead child first and terminates them (which one wins is a race).
        survivor_error = (
            "LAGSCommunicationError: rank 0:" in run.stderr and "another rank probably raised" in run.stderr
        )
        launcher_stop = "terminated with code 1. Forcefully terminating all other processes" in run.stderr
        assert survivor_error or launcher_stop, run.stderr[-3000:]
    assert elapsed < 200, f"ranks took {elapsed:.0f} s to stop"
    assert not list(tmp_path.glob("rank*.pt"))  # no rank ran to completion


def test_accumulation_clipping_and_bf16_mixed(tmp_path):
    clip = 0.05
    run_worker(
        tmp_path,
        *("--devices", "2", "--density", "0.1", "--accumulate", "2", "--clip", str(clip)),
        *("--precision", "bf16-mixed", "--max-steps", "5", "--lr", "0.5"),
    )
    ranks = load_ranks(tmp_path, 2)
    assert_replicas_identical(ranks)
    # Clipping ran after aggregation: the clipped global norm is the same on both ranks and at most clip.
    norms = [r["clipped_norms"] for r in ranks]
    assert len(norms[0]) == 5 and norms[0] == norms[1]
    assert max(norms[0]) <= clip * (1 + 1e-5)
    logged = ranks[0]["logged"]
    assert logged["lags/comm_hidden_s"] >= 0 and logged["lags/comm_exposed_s"] >= 0
    assert 0 < logged["lags/density"] < 0.2
