"""`Trainer(strategy="ddp", accelerator="cpu", devices=2)` trains a small FADNet on synthetic data (gloo)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path


def test_ddp_two_cpu_processes_train_fadnet(tmp_path):
    script = Path(__file__).with_name("ddp_train.py")
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["backend"] for r in ranks] == ["gloo", "gloo"]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 4
    # DDP keeps replicas identical: gradients were all-reduced every step.
    assert math.isclose(ranks[0]["checksum"], ranks[1]["checksum"], rel_tol=0, abs_tol=1e-9)
    # Metrics were synced across ranks.
    assert ranks[0]["val_epe"] == ranks[1]["val_epe"] and math.isfinite(ranks[0]["val_epe"])
    # The sampler sharded the data: in each epoch, the two ranks trained on different samples.
    per_epoch = 2 * 2  # limit_train_batches x batch_size
    for epoch in range(2):
        a = set(ranks[0]["names"][epoch * per_epoch : (epoch + 1) * per_epoch])
        b = set(ranks[1]["names"][epoch * per_epoch : (epoch + 1) * per_epoch])
        assert a and b and not (a & b)
