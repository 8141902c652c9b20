"""The shipped EASNet config runs through `hpml validate` (subclass hparams under LightningCLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lightning_hpml.cli import main

CONFIG = Path(__file__).parents[2] / "configs" / "easnet_sceneflow.yaml"


def test_easnet_config_validates_through_the_cli(tmp_path):
    options = {"height": 96, "width": 192, "num_sequences": 1, "num_test_sequences": 1, "frames_per_sequence": 2}
    cli = main(
        [
            "validate",
            "--config",
            str(CONFIG),
            "--data.init_args.synthetic_dir",
            str(tmp_path / "sceneflow"),
            "--data.init_args.synthetic_options",
            json.dumps(options),
            "--data.init_args.subsets",
            "[FlyingThings3D]",
            "--data.init_args.num_workers",
            "0",
            "--model.init_args.val_bn_batches",
            "0",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert math.isfinite(float(cli.trainer.callback_metrics["val/epe"]))
