"""Export what CF-NeRF learned at the end of training: COLMAP cameras, a novel-view GIF and the registration log."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

__all__ = ["CFNeRFExporter"]


class CFNeRFExporter(Callback):
    """After ``fit``, write into ``output_dir``: ``sparse/{cameras,images,points3D}.txt`` (learned cameras, COLMAP
    text, as the official ``export_colmap.py``), ``trajectory.gif`` (renders along the learned trajectory, at the
    incremental stages' image size) and ``registration.json`` (pose errors after each stage, when ground truth
    exists). A non-empty ``output_dir`` is refused before training starts unless ``overwrite=True``.
    """

    def __init__(self, output_dir: str, gif: bool = True, overwrite: bool = False) -> None:
        self.output_dir, self.gif, self.overwrite = Path(output_dir), gif, overwrite

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.overwrite and self.output_dir.exists() and any(self.output_dir.iterdir()):
            raise FileExistsError(f"export folder {self.output_dir} is not empty; choose a new one or overwrite=True")

    @override
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        sequence = trainer.datamodule.train_sequence()
        height, width = sequence.images.shape[-2:]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        pl_module.export_colmap(self.output_dir / "sparse", sequence.names, height, width, overwrite=self.overwrite)
        (self.output_dir / "registration.json").write_text(json.dumps(pl_module.pose_history, indent=2) + "\n")
        if self.gif:
            gif = self.output_dir / "trajectory.gif"
            if gif.exists() and self.overwrite:
                gif.unlink()
            pl_module.render_gif(gif, height, width)
