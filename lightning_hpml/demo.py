"""``make demo``: train a small FADNet on synthetic Scene Flow-format data and show that it learned.

Runs the same objects as ``hpml fit --config <config>`` (LightningCLI builds them from the YAML), then: validates
the untrained model, trains, validates again, prints both metric sets side by side, writes a picture (left image,
prediction, ground truth, error map), ``metrics.json`` and a checkpoint into ``--output-dir``. Exits with status 1 if
the end-point error did not fall.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lightning_hpml.cli import main as cli_main
from lightning_hpml.viz import save_png, stereo_panel

METRICS = (("val/epe", "EPE (px)"), ("val/d1_all", "D1-all"), ("val/bad_1px", ">1px"), ("val/bad_3px", ">3px"))


def _validate(trainer, model, datamodule) -> dict[str, float]:
    (result,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in result.items()}


def _write_panel(model, datamodule, path: Path) -> None:
    batch = next(iter(datamodule.val_dataloader()))
    model.eval()
    with torch.no_grad():
        pred = model.predict_disparity(batch["left"], batch["right"])["disparity"]
    panel = stereo_panel(
        batch["left"][0],
        pred[0, 0],
        batch["disparity"][0, 0],
        batch["valid"][0, 0],
        max_disp=float(batch["disparity"][0][batch["valid"][0]].max()),
    )
    save_png(path, panel)


def run(config: str, output_dir: Path) -> int:
    console = Console()
    if output_dir.exists() and any(output_dir.iterdir()):
        console.print(f"[red]{output_dir} exists and is not empty; choose a new --output-dir[/red]")
        return 2
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sys.argv = sys.argv[:1]  # the CLI gets its arguments below, not from this script's command line
    cli = cli_main(
        [
            "--config",
            config,
            "--trainer.default_root_dir",
            str(output_dir),
            "--trainer.logger.init_args.save_dir",
            str(output_dir),
        ],
        run=False,
    )
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    before = _validate(trainer, model, data)
    trainer.fit(model, datamodule=data)
    after = _validate(trainer, model, data)
    minutes = (time.perf_counter() - start) / 60

    table = Table(title=f"FADNet on synthetic Scene Flow (validation set, {minutes:.1f} min on CPU)")
    table.add_column("metric")
    table.add_column("before training", justify="right")
    table.add_column("after training", justify="right")
    for key, label in METRICS:
        fmt = "{:.3f}" if key == "val/epe" else "{:.2%}"
        table.add_row(label, fmt.format(before[key]), fmt.format(after[key]))
    console.print(table)

    picture = output_dir / "disparity.png"
    _write_panel(model, data, picture)
    checkpoint = output_dir / "fadnet_demo.ckpt"
    trainer.save_checkpoint(checkpoint)
    (output_dir / "metrics.json").write_text(
        json.dumps({"before": before, "after": after, "minutes": minutes}, indent=2)
    )
    console.print(
        f"picture: {picture}\ncheckpoint: {checkpoint}\nmetrics: {output_dir / 'metrics.json'}\n"
        f"TensorBoard logs: {trainer.log_dir}"
    )
    if not after["val/epe"] < before["val/epe"]:
        console.print("[red]EPE did not fall during training[/red]")
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo_fadnet_synthetic.yaml")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.exit(run(args.config, args.output_dir))


if __name__ == "__main__":
    main()
