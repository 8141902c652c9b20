"""MVS prediction output: per-view PFMs, re-fusable folders and fused clouds, through the real Trainer and `hpml`."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import open3d as o3d
import pytest
import torch

from lightning_hpml.callbacks import MVSPredictionWriter
from lightning_hpml.cli import main
from lightning_hpml.datamodules.formats.mvs_cameras import read_cam_txt, read_pair_txt
from lightning_hpml.datamodules.formats.pfm import read_pfm
from lightning_hpml.datamodules.mvs import MVSProjectDataModule
from lightning_hpml.datamodules.synthetic.dtu_writer import write_mvs_project
from lightning_hpml.metrics.point_cloud import dtu_accuracy_completeness
from lightning_hpml.modules.mvs.depth_fusion import fuse_depth_maps, fuse_prediction_folder

CONFIGS = Path(__file__).parents[2] / "configs"


class _ExactDepth(L.LightningModule):
    """Predicts the renderer's exact depth (from the project's ``depths/`` folder): isolates writer and fusion."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def predict_step(self, batch, batch_idx):
        depths = [
            torch.from_numpy(read_pfm(self.root / scene / "depths" / f"{int(views[0]):08d}.pfm").copy())
            for scene, views in zip(batch["scan"], batch["view_ids"])
        ]
        depth = torch.stack(depths)[:, None]
        return {"depth": depth, "confidence": torch.ones_like(depth)}


def test_writer_saves_views_and_fuses_exact_depth_onto_the_surface(tmp_path):
    root = write_mvs_project(tmp_path / "project", "scan7", num_views=5, height=64, width=80)
    data = MVSProjectDataModule(str(root), ("scan7",), num_views=3, batch_size=2)
    out = tmp_path / "pred"
    writer = MVSPredictionWriter(str(out), ply_name="dispmvs{number:03d}_l3.ply", min_views=2)
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False)
    trainer.predict(_ExactDepth(root), datamodule=data, return_predictions=False)

    scene = out / "scan7"
    assert sorted(p.name for p in (scene / "depth_est").iterdir()) == [f"{v:08d}.pfm" for v in range(5)]
    assert read_pfm(scene / "confidence" / "00000002.pfm").shape == (64, 80)
    pairs = read_pair_txt(scene / "pair.txt")
    assert [s for s, _ in pairs[2]] == [s for s, _ in read_pair_txt(root / "scan7" / "pair.txt")[2][:2]]
    camera = read_cam_txt(scene / "cams" / "00000002_cam.txt", "max")
    np.testing.assert_allclose(camera.intrinsic, read_cam_txt(root / "scan7" / "cams" / "00000002_cam.txt").intrinsic)

    cloud = o3d.io.read_point_cloud(str(out / "dispmvs007_l3.ply"))
    assert len(cloud.points) > 0.3 * 5 * 64 * 80
    truth = [torch.from_numpy(read_pfm(root / "scan7" / "depths" / f"{v:08d}.pfm").copy()) for v in range(5)]
    cams = [read_cam_txt(root / "scan7" / "cams" / f"{v:08d}_cam.txt") for v in range(5)]
    reference = fuse_depth_maps(
        torch.stack(truth),
        torch.zeros(5, 3, 64, 80),
        torch.from_numpy(np.stack([c.intrinsic for c in cams])),
        torch.from_numpy(np.stack([c.extrinsic for c in cams])),
        {v: [] for v in range(5)},
        min_views=0,
    )
    # The reference is itself sampled (one point per pixel, ~0.06 units apart at depth 5): well below that spacing.
    assert dtu_accuracy_completeness(cloud, reference, spacing=None, max_dist=1.0)["accuracy"] < 1e-2
    # Re-fusing offline with a stricter view count keeps fewer points.
    strict = fuse_prediction_folder(scene, min_views=2, pixel_threshold=0.05)
    assert 0 < len(strict.points) < len(cloud.points)

    with pytest.raises(FileExistsError, match="not empty"):
        trainer.predict(_ExactDepth(root), datamodule=data, return_predictions=False)


def test_hpml_predict_with_the_dtu_eval_config_writes_depth_confidence_and_cloud(tmp_path):
    # The eval config reads IterMVS's cams_1 (depth line: min max).
    root = write_mvs_project(tmp_path / "dtu_eval", "scan1", num_views=4, height=96, width=128, cams_folder="cams_1")
    out = tmp_path / "outputs"
    main(
        [
            "predict",
            "--config",
            str(CONFIGS / "dispmvs_dtu_eval.yaml"),
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--model.init_args.net.init_args.width",
            "0.25",
            "--model.init_args.net.init_args.coarse_iterations",
            "2",
            "--model.init_args.net.init_args.fine_iterations",
            "1",
            "--data.init_args.root",
            str(root),
            "--data.init_args.scenes",
            "[scan1]",
            "--data.init_args.num_views",
            "3",
            "--data.init_args.image_size",
            "[128, 160]",
            "--trainer.callbacks.init_args.output_dir",
            str(out),
            "--trainer.callbacks.init_args.min_views",
            "1",
        ]
    )
    depth = read_pfm(out / "scan1" / "depth_est" / "00000000.pfm")
    confidence = read_pfm(out / "scan1" / "confidence" / "00000000.pfm")
    assert depth.shape == confidence.shape == (128, 160)
    near, far = read_cam_txt(out / "scan1" / "cams" / "00000000_cam.txt", "max").depth_range()
    assert np.isfinite(depth).all() and depth.min() >= near * 0.999 and depth.max() <= far * 1.001
    assert (confidence >= 0).all() and (confidence <= 1.0001).all()
    cloud = o3d.io.read_point_cloud(str(out / "dispmvs001_l3.ply"))
    assert len(cloud.points) > 0
