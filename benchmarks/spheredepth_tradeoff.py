"""SphereDepth's two hyper-parameters, mesh level and image sampling resolution: latency vs AbsRel.

Every (level, sampling size) pair trains a small SphereDepth (width 8, pooling down to level 1 so every mesh level sees
the whole sphere at its bottleneck; Adam 3e-3, BerHu) for
``--steps`` steps on synthetic Stanford2D3D-format panoramas of ``--size`` (box rooms ray cast from known geometry),
then reports the test AbsRel / delta1 and the median forward latency of one panorama (batch 1, ``--repeats`` timed
forwards after warm-up, projection tables already built). Writes JSON and a markdown table to ``results/``.
Synthetic rooms are far simpler than real scans: read the table as the *shape* of the trade-off only.

    python benchmarks/spheredepth_tradeoff.py                # about 4 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from _report import markdown_table, reserve_result_path, write_results

from lightning_hpml.datamodules.panorama import Stanford2D3DDataModule
from lightning_hpml.modules.panorama import SphereDepth, SphereDepthModule, evaluate_depth

RESULTS = Path(__file__).with_name("results")


def run(level: int, sample: tuple[int, int], args: argparse.Namespace) -> dict:
    L.seed_everything(0, verbose=False)
    data = Stanford2D3DDataModule(batch_size=4, synthetic_counts=(48, 8, 8), synthetic_size=tuple(args.size))
    net = SphereDepth(mesh_level=level, sample_size=sample, width=8, depth=level - 1)
    model = SphereDepthModule(net, lr=3e-3)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, data)
    data.setup("test")
    values = evaluate_depth(model, data.test_dataloader())
    model.eval()
    with torch.no_grad():
        image = torch.rand(1, 3, *args.size)
        for _ in range(3):
            model(image)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - start)
    return {
        "mesh_level": level,
        "vertices": net.vertices.shape[0],
        "sample_size": list(sample),
        "latency_ms": 1e3 * statistics.median(times),
        "abs_rel": float(values["abs_rel"]),
        "delta1": float(values["delta1"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--samples", type=int, nargs="+", default=[16, 32, 64], help="sampling heights (W = 2H)")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 128])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="hpml-bench-"))
    rows = [run(level, (h, 2 * h), args) for level in args.levels for h in args.samples]
    table = markdown_table(
        ["mesh level", "vertices", "sampling", "latency ms (CPU, 1 pano)", "AbsRel", "delta1"],
        [
            [
                str(r["mesh_level"]),
                f"{r['vertices']:,}",
                "x".join(map(str, r["sample_size"])),
                f"{r['latency_ms']:.1f}",
                f"{r['abs_rel']:.3f}",
                f"{r['delta1']:.3f}",
            ]
            for r in rows
        ],
    )
    print(table)
    output = reserve_result_path(RESULTS, "spheredepth_tradeoff")
    write_results(
        output, {"args": vars(args), "torch": torch.__version__, "cpu_count": os.cpu_count(), "results": rows}, table
    )


if __name__ == "__main__":
    main()
