"""The benchmark scripts' shared output helpers (``benchmarks/_report.py``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_report():
    spec = importlib.util.spec_from_file_location("_report", BENCHMARKS / "_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reserved_result_paths_never_collide(tmp_path):
    # Two runs started in the same second (as two benchmark invocations launched together) must not share a name.
    report = load_report()
    paths = [report.reserve_result_path(tmp_path / "results", "lags_convergence") for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.is_file() and p.suffix == ".json" for p in paths)
    assert all(p.name.startswith("lags_convergence-") for p in paths)


def test_a_run_that_fails_before_writing_leaves_no_empty_result(tmp_path):
    report = load_report()
    results = tmp_path / "results"
    try:
        with report.reserved_result_path(results, "lags_convergence") as path:
            assert path.is_file()
            raise RuntimeError("a variant crashed")
    except RuntimeError:
        pass
    assert not path.exists()
    with report.reserved_result_path(results, "lags_convergence") as kept:
        kept.write_text("{}")
    assert kept.read_text() == "{}"


def test_results_name_the_commit_they_came_from(tmp_path):
    report = load_report()
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCHMARKS, capture_output=True, text=True, check=False)
    revision = report.source_revision()
    if git.returncode == 0:  # a checkout (CI runs a clone): the commit, marked when tracked files differ
        assert revision is not None and revision.removesuffix("+dirty") == git.stdout.strip()
    else:
        assert revision is None
    assert report.source_revision(tmp_path) is None  # not a git checkout


def test_written_results_carry_the_revision_and_the_table(tmp_path):
    report = load_report()
    output = tmp_path / "bench-20261201T000000Z.json"
    report.write_results(output, {"results": [1, 2]}, "| a |\n")
    payload = json.loads(output.read_text())
    assert payload["results"] == [1, 2] and payload["source_revision"] == report.source_revision()
    assert output.with_suffix(".md").read_text() == "| a |\n"
