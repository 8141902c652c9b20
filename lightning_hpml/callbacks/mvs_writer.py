"""Write multi-view-stereo predictions (depth, confidence) per view and fuse each scene into a point cloud."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import open3d as o3d
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_hpml.callbacks.output_folder import refuse_non_empty_folder
from lightning_hpml.datamodules.formats.image import write_rgb
from lightning_hpml.datamodules.formats.mvs_cameras import MVSCamera, write_cam_txt, write_pair_txt
from lightning_hpml.datamodules.formats.pfm import write_pfm
from lightning_hpml.modules.mvs.depth_fusion import fuse_prediction_folder

__all__ = ["MVSPredictionWriter"]


class MVSPredictionWriter(BasePredictionWriter):
    """Save ``depth`` and ``confidence`` of every reference view, then fuse each scene into a ``.ply``.

    Output layout (MVSNet's evaluation-output layout, readable by :func:`~lightning_hpml.modules.mvs.depth_fusion.
    fuse_prediction_folder` for re-fusing with other thresholds)::

        <output_dir>/<scene>/depth_est/{view:08d}.pfm     predicted depth (scene units)
        <output_dir>/<scene>/confidence/{view:08d}.pfm    confidence in [0, 1]
        <output_dir>/<scene>/images/{view:08d}.png        the reference image at prediction resolution (colours)
        <output_dir>/<scene>/cams/{view:08d}_cam.txt      its camera at that resolution (depth line: min max)
        <output_dir>/<scene>/pair.txt                     the source views each reference was predicted with
        <output_dir>/<ply_name>                           fused cloud, e.g. ``dispmvs001_l3.ply`` for DTU's eval

    Batches need ``scan`` (scene name), ``view_ids`` (B, V), ``images``, ``intrinsics``, ``extrinsics`` and
    ``depth_range``. Under DDP every rank writes its views; rank 0 fuses after all ranks are done. A non-empty
    ``output_dir`` is refused unless ``overwrite=True``.

    Args:
        output_dir: Folder to write into.
        fuse: Fuse each scene at the end of prediction.
        ply_name: Cloud file name; ``{scene}`` is the scene name, ``{number}`` the digits in it (``scan1`` -> 1).
        pixel_threshold, relative_depth_threshold, min_views, confidence_threshold: Fusion settings
            (:func:`~lightning_hpml.modules.mvs.depth_fusion.fuse_depth_maps`; DTU in DispMVS: 0.25-0.75 px, 0.01, 3).
        overwrite: Allow writing into a non-empty folder.
    """

    def __init__(
        self,
        output_dir: str,
        fuse: bool = True,
        ply_name: str = "{scene}.ply",
        pixel_threshold: float = 0.5,
        relative_depth_threshold: float = 0.01,
        min_views: int = 3,
        confidence_threshold: float | None = None,
        overwrite: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir, self.fuse, self.ply_name, self.overwrite = Path(output_dir), fuse, ply_name, overwrite
        self.fusion_args = {
            "pixel_threshold": pixel_threshold,
            "relative_depth_threshold": relative_depth_threshold,
            "min_views": min_views,
            "confidence_threshold": confidence_threshold,
        }
        self.pairs: dict[str, dict[int, list[int]]] = {}

    @override
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            refuse_non_empty_folder(self.output_dir, self.overwrite)
        self.pairs = {}

    @override
    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        missing = [
            k for k in ("scan", "view_ids", "images", "intrinsics", "extrinsics", "depth_range") if k not in batch
        ]
        if missing:
            raise KeyError(f"MVSPredictionWriter needs batch keys {missing} to name and fuse the predictions")
        for i, scene in enumerate(batch["scan"]):
            views = [int(v) for v in batch["view_ids"][i]]
            ref, folder = views[0], self.output_dir / _safe_name(scene)
            write_pfm(folder / "depth_est" / f"{ref:08d}.pfm", _numpy(prediction["depth"][i, 0]))
            write_pfm(folder / "confidence" / f"{ref:08d}.pfm", _numpy(prediction["confidence"][i, 0]))
            image = (_numpy(batch["images"][i, 0]).transpose(1, 2, 0) * 255.0).round().clip(0, 255)
            write_rgb(folder / "images" / f"{ref:08d}.png", image.astype(np.uint8))
            near, far = (float(x) for x in batch["depth_range"][i])
            camera = MVSCamera(
                _numpy(batch["extrinsics"][i, 0]).astype(np.float64),
                _numpy(batch["intrinsics"][i, 0]).astype(np.float64),
                depth_min=near,
                depth_max=far,
            )
            write_cam_txt(folder / "cams" / f"{ref:08d}_cam.txt", camera)
            self.pairs.setdefault(scene, {})[ref] = views[1:]

    @override
    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pairs = self.pairs
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[dict] = [{} for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, self.pairs)
            pairs = {}
            for rank_pairs in gathered:
                for scene, refs in rank_pairs.items():
                    pairs.setdefault(scene, {}).update(refs)
        if not trainer.is_global_zero:
            return
        for scene, refs in sorted(pairs.items()):
            folder = self.output_dir / _safe_name(scene)
            write_pair_txt(folder / "pair.txt", {ref: [(s, 0.0) for s in refs[ref]] for ref in sorted(refs)})
            if self.fuse:
                cloud = fuse_prediction_folder(folder, **self.fusion_args)
                number = "".join(re.findall(r"\d+", scene))
                path = self.output_dir / self.ply_name.format(scene=scene, number=int(number) if number else 0)
                if path.exists() and not self.overwrite:
                    raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
                if len(cloud.points) == 0:
                    rank_zero_warn(
                        f"MVSPredictionWriter: no pixel of scene {scene!r} is consistent in {self.fusion_args['min_views']}"
                        f" views; {path} not written (lower min_views or raise the thresholds)"
                    )
                    continue
                o3d.io.write_point_cloud(str(path), cloud)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _safe_name(scene: str) -> str:
    if not scene or Path(scene).is_absolute() or ".." in Path(scene).parts or "/" in scene:
        raise ValueError(f"scene name {scene!r} must be a plain folder name")
    return scene
