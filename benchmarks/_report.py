"""Output helpers shared by the benchmark scripts."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def source_revision(directory: Path | None = None) -> str | None:
    """The git commit the benchmark code came from (``+dirty`` when tracked files differ from it), so a result can be
    traced to the code that produced it; ``None`` outside a git checkout or without git."""
    directory = directory or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=directory, timeout=30, check=False).returncode
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def write_results(output: Path, payload: dict[str, Any], markdown: str) -> None:
    """``payload`` with its ``source_revision`` as JSON at ``output``, ``markdown`` next to it as ``.md``."""
    output.write_text(json.dumps({**payload, "source_revision": source_revision()}, indent=1), encoding="utf-8")
    output.with_suffix(".md").write_text(markdown, encoding="utf-8")


def reserve_result_path(directory: Path, prefix: str) -> Path:
    """``directory/<prefix>-<UTC time>.json``, created empty with exclusive access (``-2``, ``-3``, ... appended when
    another run took that name in the same second), so concurrent runs never write over each other's results."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for attempt in itertools.count(1):
        path = directory / f"{prefix}-{stamp}{'' if attempt == 1 else f'-{attempt}'}.json"
        try:
            path.open("x").close()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


@contextlib.contextmanager
def reserved_result_path(directory: Path, prefix: str) -> Iterator[Path]:
    """:func:`reserve_result_path` for a run that holds its name from the start: if the run fails before writing to
    the file, the empty file is removed, so a crashed run leaves no blank result behind."""
    path = reserve_result_path(directory, prefix)
    try:
        yield path
    except BaseException:
        if path.stat().st_size == 0:
            path.unlink()
        raise
