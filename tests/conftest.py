"""Shared test settings: CPU threads kept low so pytest-xdist workers do not oversubscribe 2 cores."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
