"""``SphereDepthModule``: trains and evaluates a panorama depth network (SphereDepth by default).

Batch keys read: ``image`` (B, 3, H, W) in [0, 1], ``depth`` (B, 1, H, W) metres, ``valid`` (B, 1, H, W) bool.
Logs ``train/loss``; ``val/abs_rel``, ``val/sq_rel``, ``val/rmse``, ``val/rmse_log`` (natural log),
``val/delta1..3`` (and the same under ``test/``), through :class:`~lightning_hpml.metrics.DepthMetrics`.
``predict_step`` returns the depth map per panorama; :func:`panorama_point_cloud` turns one into an open3d cloud.

Loss: the reverse Huber (BerHu) on valid pixels of the projected depth, threshold ``0.2 * max |error|`` per batch,
as UniFuse trains its panorama baselines (SphereDepth's own loss is not public). Optimiser: Adam, lr 1e-4 (UniFuse).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import open3d as o3d
import torch
from torch import Tensor, nn

from lightning_hpml.metrics.depth import DepthMetrics
from lightning_hpml.modules.layers.icosphere import equirect_directions
from lightning_hpml.modules.panorama.spheredepth import SphereDepth

__all__ = ["SphereDepthModule", "berhu_loss", "evaluate_depth", "panorama_point_cloud"]


def berhu_loss(pred: Tensor, target: Tensor, valid: Tensor, threshold_ratio: float = 0.2) -> Tensor:
    """Reverse Huber: L1 below ``c = ratio * max|e|``, ``(e^2 + c^2) / 2c`` above, averaged over valid pixels."""
    if not valid.any():
        raise ValueError("berhu_loss: the batch has no valid ground-truth pixel")
    error = (pred - target)[valid].abs()
    c = (threshold_ratio * error.max()).detach().clamp_min(1e-6)
    return torch.where(error <= c, error, (error.square() + c * c) / (2 * c)).mean()


def panorama_point_cloud(depth: Tensor, image: Tensor | None = None, valid: Tensor | None = None):
    """An :class:`open3d.geometry.PointCloud` from one equirectangular range map (H, W) and optional colours."""
    depth = depth.detach().reshape(depth.shape[-2:]).cpu().double()
    directions = equirect_directions(*depth.shape)
    points = (directions * depth[..., None]).reshape(-1, 3)
    keep = torch.ones(points.shape[0], dtype=torch.bool) if valid is None else valid.reshape(-1).cpu()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[keep].numpy()))
    if image is not None:
        colours = image.detach().reshape(3, -1).T.cpu().double()[keep]
        cloud.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(colours.numpy()))
    return cloud


@torch.no_grad()
def evaluate_depth(model: nn.Module, loader, max_depth: float = 10.0) -> dict[str, float]:
    """:class:`DepthMetrics` of ``model`` (returning ``{"depth": ...}``) over a loader, in eval mode (restored after)."""
    metric = DepthMetrics(max_depth=max_depth)
    was_training = model.training
    model.eval()
    for batch in loader:
        metric.update(model(batch["image"])["depth"], batch["depth"], batch["valid"])
    model.train(was_training)
    return {k: float(v) for k, v in metric.compute().items()}


class SphereDepthModule(L.LightningModule):
    """Args:
    net: The depth network (default: :class:`SphereDepth` with its defaults).
    lr: Adam learning rate.
    max_depth: Clamp of metrics and predictions (10 m).
    """

    def __init__(self, net: nn.Module | None = None, lr: float = 1e-4, max_depth: float = 10.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net if net is not None else SphereDepth()
        self.lr = lr
        self.val_metrics = DepthMetrics(max_depth=max_depth)
        self.test_metrics = DepthMetrics(max_depth=max_depth)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.net(image)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = berhu_loss(self(batch["image"])["depth"], batch["depth"], batch["valid"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metrics.update(self(batch["image"])["depth"], batch["depth"], batch["valid"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute().items()}, prog_bar=False)
        self.val_metrics.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_metrics.update(self(batch["image"])["depth"], batch["depth"], batch["valid"])

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self.test_metrics.compute().items()})
        self.test_metrics.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"depth": self(batch["image"])["depth"], "path": batch.get("path")}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)
