"""Write predicted disparity maps in the dataset's own file format during ``trainer.predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from lightning_hpml.callbacks.output_folder import refuse_non_empty_folder
from lightning_hpml.datamodules.formats import write_kitti_disparity, write_pfm

__all__ = ["DisparityWriter"]

_SUFFIX = {"pfm": ".pfm", "kitti_png": ".png"}


class DisparityWriter(BasePredictionWriter):
    """Save each predicted disparity as ``<output_dir>/<name><suffix>``.

    ``name`` comes from the batch (e.g. ``disp_0/000000_10`` for KITTI, so the folder is a ready submission) and the
    format from the DataModule's ``disparity_format`` (PFM for Scene Flow, 16-bit KITTI PNG for KITTI) unless
    ``file_format`` names one. Existing files are never overwritten unless ``overwrite=True``; a non-empty
    ``output_dir`` is refused before any prediction is computed.

    Args:
        output_dir: Folder to write into.
        file_format: ``"auto"`` (ask the DataModule), ``"pfm"`` or ``"kitti_png"``.
        overwrite: Allow replacing existing files.
    """

    def __init__(
        self,
        output_dir: str,
        file_format: Literal["auto", "pfm", "kitti_png"] = "auto",
        overwrite: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        if file_format not in ("auto", *_SUFFIX):
            raise ValueError(f"`file_format` must be 'auto', 'pfm' or 'kitti_png', got {file_format!r}")
        self.output_dir = Path(output_dir)
        self.file_format = file_format
        self.overwrite = overwrite
        self._resolved_format: str | None = None

    @override
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fmt = self.file_format
        if fmt == "auto":
            fmt = getattr(trainer.datamodule, "disparity_format", None)
            if fmt not in _SUFFIX:
                raise ValueError(
                    "DisparityWriter(file_format='auto') needs a DataModule with `disparity_format` 'pfm' or "
                    f"'kitti_png', got {fmt!r}; pass file_format explicitly"
                )
        self._resolved_format = fmt
        refuse_non_empty_folder(self.output_dir, self.overwrite)

    @override
    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        names = prediction.get("name")
        disparity = prediction["disparity"].detach().float().cpu().numpy()
        if names is None or len(names) != len(disparity):
            raise KeyError("DisparityWriter needs a `name` per sample in the batch to name the output files")
        for name, disp in zip(names, disparity):
            self._write(Path(name), disp[0])

    def _write(self, name: Path, disp: np.ndarray) -> None:
        if name.is_absolute() or ".." in name.parts:
            raise ValueError(f"sample name {str(name)!r} must be a relative path inside the output folder")
        path = self.output_dir / name.with_name(name.name + _SUFFIX[self._resolved_format])
        if path.exists() and not self.overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._resolved_format == "pfm":
            write_pfm(path, disp.astype(np.float32))
        else:
            # A stored 0 means "no prediction" to the KITTI devkit: keep every pixel at least 1/256 px.
            write_kitti_disparity(path, np.clip(disp, 1 / 256.0, 65535 / 256.0), valid=None)
