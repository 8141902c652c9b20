"""The ``hpml`` command: LightningCLI over every LightningModule and LightningDataModule in the package.

Usage::

    hpml fit --config configs/fadnet_sceneflow.yaml
    hpml validate --config configs/fadnet_sceneflow.yaml --ckpt_path path/to/last.ckpt
    hpml predict --config configs/fadnet_kitti2015.yaml --ckpt_path ... \
        --trainer.callbacks+=DisparityWriter --trainer.callbacks.output_dir predictions/

Models and DataModules are chosen by ``class_path`` (any subclass of ``LightningModule``/``LightningDataModule``);
strategies by registered name (``--trainer.strategy ddp``) or ``class_path``. The resolved config is saved next to
the logs and an existing one is never overwritten.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningCLI

import lightning_hpml  # noqa: F401  (registers strategies and models)

__all__ = ["HPMLCLI", "main"]


class HPMLCLI(LightningCLI):
    """LightningCLI with subclass mode for models and data, and refusal to overwrite a saved config."""


def main(args: list[str] | None = None, run: bool = True) -> HPMLCLI:
    """Build (and by default run) the CLI; returns it so tests and notebooks can inspect the trainer and model."""
    return HPMLCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": False},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def console_main() -> None:
    """Entry point of the ``hpml`` console script (returns nothing, so the process exits with status 0)."""
    main()


if __name__ == "__main__":
    console_main()
