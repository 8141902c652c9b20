"""CF-NeRF: camera-parameter-free NeRF, estimating intrinsics and poses image by image while fitting the field.

Paper: Q. Yan, Q. Wang, K. Zhao, J. Chen, B. Li, X. Chu, F. Deng, "CF-NeRF: Camera Parameter Free Neural Radiance
Fields with Incremental Learning", AAAI 2024 (arXiv 2312.08760). Official code:
https://github.com/Yannnnnnnnnnnn/CF-NeRF_release (``train_iter_pose.py``, ``models/cam_params.py``, built on NeRFmm).

Training follows :class:`~lightning_hpml.modules.nerf.incremental_schedule.IncrementalSchedule`: initialisation on
the first 3 images, then per new image implicit localisation (its pose only, NeRF frozen), a local NeRF + pose pass
on the last 3 images and periodic global passes (NeRF, focal and all poses), then global passes from coarse to fine
image pyramid levels. Each step renders ``rays_per_step`` random pixels (with sub-pixel jitter) of one image and
minimises the smooth-L1 colour error. As the official code, every stage starts fresh Adam optimisers (one each for
the NeRF, the focal, the rotations and the translations, learning rates reset) and decays them with step schedules
(NeRF x0.9954 every 20 steps, cameras x0.9 every 100 steps).

Batches: the training loader only paces steps; images come from the DataModule's ``train_sequence(level)``
(:class:`~lightning_hpml.datamodules.nerf.NeRFBusterDataModule`). Ground-truth cameras, if the dataset has them, are
only used to log ``pose/rotation_deg`` and ``pose/translation`` after each stage (Sim(3)-aligned, see
:mod:`lightning_hpml.metrics.camera_pose`). Test batches are held-out frames with ground-truth poses: each is brought
into the learned frame through the alignment, its pose refined for ``test_pose_steps`` steps with the NeRF frozen
(the usual test-time optimisation of pose-free NeRFs), rendered, and scored by PSNR and SSIM (torchmetrics).

Initialisation candidates (``init_candidates`` K > 1, not in the official code): from identity cameras, the first
images can settle in a wrong basin (on our synthetic orbit: a collapsed focal with the cameras translating the other
way, or forward motion instead of the orbit), and every later image inherits it. The init stage is then run K times,
candidate ``c > 0`` from a field re-initialised with seed ``(seed, c)`` and identity cameras; each candidate is scored
by the PSNR of full renders of the init images and the best one is restored before the first new image (logged as
``init/psnr``; ``pose_history`` records every candidate's score).

Differences from the official code: the initialisation candidates above; rotations are optimised in the
initialisation stage too (``init_rotation``; the official code leaves the first images at identity rotation, which
fails for trajectories that turn from the start); a separate focal learning rate; the schedule lengths, learning
rates, field size and samples per ray are arguments (defaults are the official values; the test and demo configs
shrink them for a CPU); the first image of a
new stage's pose copy and the optimiser resets are keyed to the global step so a resumed run continues exactly; the
SIREN first-layer frequency is an explicit 20 (the official passes ``sigma_mul`` there, also 20); the pyramid
levels come from :class:`~lightning_hpml.datamodules.nerf.NeRFBusterDataModule`'s centre-aligned halving, not
``cv2.pyrDown`` (which shifts the image against the centred principal point assumed here).
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.spatial.transform import Rotation, Slerp
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from lightning_hpml.datamodules.formats.colmap_text import ColmapImage, write_colmap_text
from lightning_hpml.metrics.camera_pose import apply_similarity, camera_pose_errors
from lightning_hpml.modules.layers.epipolar_flow import pixel_grid
from lightning_hpml.modules.nerf.incremental_schedule import IncrementalSchedule, Stage
from lightning_hpml.modules.nerf.learned_cameras import LearnedCameras, axis_angle_to_matrix
from lightning_hpml.modules.nerf.radiance_field import RadianceField
from lightning_hpml.modules.nerf.rendering import pixel_rays, render_rays

__all__ = ["CFNeRFModule"]

_GROUPS = ("nerf", "focal", "rotation", "translation")


class CFNeRFModule(L.LightningModule):
    """Args:
    field: The radiance field (default: :class:`RadianceField` with the official size: 8 x 128, PE 10/4).
    near, far, samples: Ray bounds and stratified samples per ray (official: 0, 6, 128).
    rays_per_step: Pixels rendered per step (official scripts: 1024 or 2048).
    nerf_lr, camera_lr: Adam learning rates of the field and of focal/rotations/translations (1e-3 each).
    rotation_lr, focal_lr: Separate rotation and focal learning rates (default: ``camera_lr``).
    nerf_decay, nerf_decay_every, camera_decay, camera_decay_every: Step-decay of the learning rates.
    sigma_noise_std: Gaussian noise on densities during training (official ``raw_noise_std`` 1.0).
    init_views, init_epochs, epochs, part_views, global_every, refine_levels, init_rotation, init_candidates: The
        schedule (:class:`IncrementalSchedule`); incremental stages run at the DataModule's ``pyramid_level``.
    test_pose_steps, test_pose_lr: Test-time pose refinement of held-out frames.
    seed: Seeds each step's ray choice, jitter and density noise from (seed, step), so resuming is exact.
    """

    def __init__(
        self,
        field: nn.Module | None = None,
        near: float = 0.0,
        far: float = 6.0,
        samples: int = 128,
        rays_per_step: int = 1024,
        nerf_lr: float = 1e-3,
        camera_lr: float = 1e-3,
        rotation_lr: float | None = None,
        focal_lr: float | None = None,
        nerf_decay: float = 0.9954,
        nerf_decay_every: int = 20,
        camera_decay: float = 0.9,
        camera_decay_every: int = 100,
        sigma_noise_std: float = 1.0,
        init_views: int = 3,
        init_epochs: int = 3000,
        epochs: int = 600,
        part_views: int = 3,
        global_every: int = 5,
        refine_levels: tuple[int, ...] = (),
        init_rotation: bool = True,
        init_candidates: int = 1,
        test_pose_steps: int = 200,
        test_pose_lr: float = 1e-3,
        seed: int = 3407,
    ) -> None:
        super().__init__()
        if not 0 <= near < far:
            raise ValueError(f"need 0 <= near < far, got near={near}, far={far}")
        self.save_hyperparameters(ignore=["field"])
        self.automatic_optimization = False
        self.field = field if field is not None else RadianceField()
        self.near, self.far, self.samples, self.rays_per_step = near, far, samples, rays_per_step
        rotation_lr = camera_lr if rotation_lr is None else rotation_lr
        focal_lr = camera_lr if focal_lr is None else focal_lr
        self.lrs = {"nerf": nerf_lr, "focal": focal_lr, "rotation": rotation_lr, "translation": camera_lr}
        self.decay = {"nerf": (nerf_decay, nerf_decay_every)} | {
            g: (camera_decay, camera_decay_every) for g in _GROUPS[1:]
        }
        self.sigma_noise_std = sigma_noise_std
        self.schedule_args = {
            "init_views": init_views,
            "init_epochs": init_epochs,
            "epochs": epochs,
            "part_views": part_views,
            "global_every": global_every,
            "refine_levels": tuple(refine_levels),
            "init_rotation": init_rotation,
            "init_candidates": init_candidates,
        }
        self.test_pose_steps, self.test_pose_lr, self.seed = test_pose_steps, test_pose_lr, seed
        self.cameras: LearnedCameras | None = None
        self.schedule: IncrementalSchedule | None = None
        self.register_buffer("schedule_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("current_stage", torch.full((), -1, dtype=torch.long))
        self.pose_history: list[dict] = []
        self.best_init: dict | None = None  # the best initialisation candidate so far: score, candidate, state
        self.test_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.test_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self._images: dict[int, tuple[Tensor, int, int]] = {}

    # -- set-up ---------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule if self._trainer is not None else None
        if data is None or not hasattr(data, "train_sequence"):
            raise ValueError("CFNeRFModule needs a DataModule with `train_sequence(level)` (e.g. NeRFBusterDataModule)")
        self.data = data
        sequence = data.train_sequence()
        self.true_poses = sequence.camera_to_world  # evaluation only (None without ground truth)
        num_images = len(sequence.names)
        if self.cameras is None:
            self.cameras = LearnedCameras(num_images)
        elif self.cameras.rotations.shape[0] != num_images:
            raise ValueError(
                f"the model has cameras for {self.cameras.rotations.shape[0]} images, the data {num_images}"
            )
        self.schedule = IncrementalSchedule(num_images, level=data.pyramid_level, **self.schedule_args)

    def _sequence(self, level: int) -> tuple[Tensor, int, int]:
        if level not in self._images:
            images = self.data.train_sequence(level).images.to(self.device)
            n, _, h, w = images.shape
            self._images[level] = (images.permute(0, 2, 3, 1).reshape(n, h * w, 3), h, w)
        return self._images[level]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        if self.cameras is None:
            raise RuntimeError("CFNeRFModule.setup must run before configure_optimizers (it creates the cameras)")
        params = {
            "nerf": list(self.field.parameters()),
            "focal": [self.cameras.focal_factor],
            "rotation": [self.cameras.rotations],
            "translation": [self.cameras.translations],
        }
        return [torch.optim.Adam(params[g], lr=self.lrs[g]) for g in _GROUPS]

    # -- rendering --------------------------------------------------------------------------------------------------
    def render_pixels(self, pixels: Tensor, camera_to_world: Tensor, height: int, width: int, **kwargs) -> dict:
        """Render ``pixels`` (N, 2) of a camera-to-world (3, 4) pose with the learned intrinsics for that size."""
        k = self.cameras.intrinsic(height, width)
        origins, directions = pixel_rays(pixels, k[0, 0], k[:2, 2], camera_to_world)
        options = {"perturb": False, "sigma_noise_std": 0.0} | kwargs
        return render_rays(self.field, origins, directions, self.near, self.far, self.samples, **options)

    @torch.no_grad()
    def render_image(self, camera_to_world: Tensor, height: int, width: int, chunk: int = 4096) -> Tensor:
        """A full (3, H, W) image of a camera-to-world (3, 4) or (4, 4) pose."""
        pixels = pixel_grid(height, width, self.device)
        rgb = [self.render_pixels(p, camera_to_world[:3], height, width)["rgb"] for p in pixels.split(chunk)]
        return torch.cat(rgb).T.reshape(3, height, width)

    # -- training ---------------------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        step = int(self.schedule_step)
        stage_index, stage, within, view = self.schedule.locate(step)
        optimizers = dict(zip(_GROUPS, self.optimizers()))
        if stage_index != int(self.current_stage):
            self._start_stage(stage_index, stage, optimizers)
        colours, height, width = self._sequence(stage.level)
        generator = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + step)
        chosen = torch.randperm(height * width, device=self.device, generator=generator)[: self.rays_per_step]
        pixels = torch.stack([chosen % width, chosen // width], -1).float()
        jittered = pixels + torch.rand(pixels.shape, device=self.device, generator=generator) - 0.5
        pose = self.cameras.camera_to_world(torch.tensor([view], device=self.device))[0]
        out = self.render_pixels(
            jittered, pose, height, width, perturb=True, sigma_noise_std=self.sigma_noise_std, generator=generator
        )
        loss = F.smooth_l1_loss(out["rgb"], colours[view, chosen])
        for optimizer in optimizers.values():
            optimizer.zero_grad()
        self.manual_backward(loss)
        for group, enabled in zip(_GROUPS, (stage.nerf, stage.focal, stage.rotation, stage.translation)):
            if enabled:
                gamma, every = self.decay[group]
                for param_group in optimizers[group].param_groups:
                    param_group["lr"] = self.lrs[group] * gamma ** (within // every)
                optimizers[group].step()
        mse = F.mse_loss(out["rgb"].detach(), colours[view, chosen])
        self.log_dict(
            {"train/loss": loss.detach(), "train/psnr": -10.0 * torch.log10(mse), "train/stage": float(stage_index)},
            prog_bar=True,
        )
        self.schedule_step += 1
        if within == stage.steps - 1:
            self._end_stage(stage_index, stage)
        if int(self.schedule_step) >= self.schedule.total_steps:
            self.trainer.should_stop = True
        return loss.detach()

    def _start_stage(self, index: int, stage: Stage, optimizers: dict) -> None:
        for group, optimizer in optimizers.items():
            optimizer.state.clear()  # the official code builds new optimisers for every stage
            for param_group in optimizer.param_groups:
                param_group["lr"] = self.lrs[group]
        if stage.candidate is not None and stage.candidate > 0:
            self._reinitialise(stage.candidate)
        if stage.name != "init" and self.best_init is not None:  # the first stage after the candidates
            self.field.load_state_dict(self.best_init["field"])
            self.cameras.load_state_dict(self.best_init["cameras"])
            self.best_init = None
        if stage.register is not None:
            self.cameras.copy_pose(stage.register - 1, stage.register)
        self.current_stage.fill_(index)

    def _reinitialise(self, candidate: int) -> None:
        """A fresh field (seeded by ``(seed, candidate)``, independent of the global RNG) and identity cameras."""
        fresh = copy.deepcopy(self.field).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + candidate)
            for layer in fresh.modules():
                if layer is not fresh and hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
        self.field.load_state_dict(fresh.state_dict())
        self.cameras.reset()

    @torch.no_grad()
    def _score_candidate(self, stage: Stage) -> float:
        """PSNR of full renders of the stage's images at their learned poses (deterministic: no jitter, no noise)."""
        colours, height, width = self._sequence(stage.level)
        poses = self.cameras.camera_to_world(torch.tensor(stage.views, device=self.device))
        rendered = torch.stack([self.render_image(pose, height, width) for pose in poses])
        target = colours[list(stage.views)].reshape(len(stage.views), height, width, 3).permute(0, 3, 1, 2)
        return float(peak_signal_noise_ratio(rendered, target, data_range=1.0))

    def _keep_if_best(self, stage: Stage) -> float:
        score = self._score_candidate(stage)
        if stage.candidate == 0 or score > self.best_init["score"]:
            self.best_init = {
                "score": score,
                "candidate": stage.candidate,
                "field": _cpu_copy(self.field.state_dict()),
                "cameras": _cpu_copy(self.cameras.state_dict()),
            }
        return score

    def _end_stage(self, index: int, stage: Stage) -> None:
        registered = max(stage.views) + 1
        truth = self.true_poses
        entry = {"stage": index, "name": stage.name, "registered": registered, "level": stage.level}
        if stage.candidate is not None and self.schedule_args["init_candidates"] > 1:
            entry |= {"candidate": stage.candidate, "init_psnr": self._keep_if_best(stage)}
            self.log("init/psnr", entry["init_psnr"])
        if truth is not None and registered >= 3:
            errors = camera_pose_errors(self.learned_poses()[:registered], truth[:registered])
            entry |= {"rotation_deg": errors["rotation_deg"], "translation": errors["translation"]}
            self.log_dict({"pose/rotation_deg": errors["rotation_deg"], "pose/translation": errors["translation"]})
        self.log("pose/registered", float(registered))
        self.pose_history.append(entry)

    def learned_poses(self) -> Tensor:
        """Learned camera-to-world poses (N, 4, 4), OpenCV convention."""
        poses = torch.eye(4, device=self.device).repeat(self.cameras.rotations.shape[0], 1, 1)
        poses[:, :3] = self.cameras.camera_to_world().detach()
        return poses.cpu()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["cf_nerf_pose_history"] = self.pose_history
        checkpoint["cf_nerf_best_init"] = self.best_init

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.pose_history = list(checkpoint.get("cf_nerf_pose_history", []))
        self.best_init = checkpoint.get("cf_nerf_best_init")
        if self.cameras is None:  # loading outside a Trainer: size the cameras from the checkpoint
            self.cameras = LearnedCameras(checkpoint["state_dict"]["cameras.rotations"].shape[0])

    # -- evaluation -------------------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        if self.true_poses is None:
            raise ValueError("testing needs ground-truth cameras of the training frames to align the learned frame")
        self.test_alignment = camera_pose_errors(self.learned_poses(), self.true_poses)  # once: poses are frozen

    def test_step(self, batch: dict, batch_idx: int) -> None:
        errors = self.test_alignment
        scale, rotation, offset = errors["scale"], errors["rotation"], errors["translation_offset"]
        inverse = (1.0 / scale, rotation.T, -(rotation.T @ offset) / scale)
        start = apply_similarity(batch["camera_to_world"].cpu(), *inverse)[0].float().to(self.device)
        image = batch["image"][0].clone()
        height, width = image.shape[-2:]
        with torch.inference_mode(False), torch.enable_grad():  # Lightning tests under inference mode
            image, start = image.clone(), start.clone()
            pose = self._refine_test_pose(image, start, height, width)
        rendered = self.render_image(pose, height, width)
        self.test_psnr.update(rendered[None].clamp(0, 1), image[None])
        self.test_ssim.update(rendered[None].clamp(0, 1), image[None])
        self.log_dict(
            {"test/rotation_deg": errors["rotation_deg"], "test/translation": errors["translation"]}, batch_size=1
        )

    def _refine_test_pose(self, image: Tensor, start: Tensor, height: int, width: int) -> Tensor:
        delta_rotation = torch.zeros(3, device=self.device, requires_grad=True)
        delta_translation = torch.zeros(3, device=self.device, requires_grad=True)
        optimizer = torch.optim.Adam([delta_rotation, delta_translation], lr=self.test_pose_lr)
        colours = image.permute(1, 2, 0).reshape(-1, 3)
        self.field.requires_grad_(False)
        try:
            generator = torch.Generator(device=self.device).manual_seed(self.seed)
            for _ in range(self.test_pose_steps):
                chosen = torch.randperm(height * width, device=self.device, generator=generator)[: self.rays_per_step]
                pixels = torch.stack([chosen % width, chosen // width], -1).float()
                pose = _compose(start, delta_rotation, delta_translation)
                loss = F.smooth_l1_loss(self.render_pixels(pixels, pose, height, width)["rgb"], colours[chosen])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        finally:
            self.field.requires_grad_(True)
        return _compose(start, delta_rotation, delta_translation).detach()

    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/psnr": self.test_psnr.compute(), "test/ssim": self.test_ssim.compute()})
        self.test_psnr.reset()
        self.test_ssim.reset()

    # -- export -----------------------------------------------------------------------------------------------------
    def export_colmap(self, folder: str | Path, names: list[str], height: int, width: int, **kwargs) -> Path:
        """Write the learned cameras as a COLMAP text model (PINHOLE, world-to-camera), as ``export_colmap.py``."""
        intrinsic = self.cameras.intrinsic(height, width).detach().double().cpu().numpy()
        world_to_camera = torch.linalg.inv(self.learned_poses().double()).numpy()
        images = [ColmapImage(name, pose, intrinsic, width, height) for name, pose in zip(names, world_to_camera)]
        return write_colmap_text(folder, images, **kwargs)

    @torch.no_grad()
    def render_gif(self, path: str | Path, height: int, width: int, frames_between: int = 4, fps: int = 8) -> Path:
        """Render a novel-view GIF along the learned trajectory (poses interpolated between the learned cameras)."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} already exists")
        poses = self.learned_poses().double().numpy()
        times = np.arange(len(poses), dtype=np.float64)
        slerp = Slerp(times, Rotation.from_matrix(poses[:, :3, :3]))
        queries = np.linspace(0, len(poses) - 1, (len(poses) - 1) * frames_between + 1)
        rotations = slerp(queries).as_matrix()
        centres = np.stack([np.interp(queries, times, poses[:, i, 3]) for i in range(3)], -1)
        images = []
        for rotation, centre in zip(rotations, centres):
            pose = torch.from_numpy(np.concatenate([rotation, centre[:, None]], 1)).float().to(self.device)
            rgb = self.render_image(pose, height, width).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            images.append(Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)))
        path.parent.mkdir(parents=True, exist_ok=True)
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return path


def _cpu_copy(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.detach().cpu().clone() for key, value in state.items()}


def _compose(start: Tensor, delta_rotation: Tensor, delta_translation: Tensor) -> Tensor:
    """``start`` (4, 4) camera-to-world with a small rotation and translation applied in the world frame."""
    rotation = axis_angle_to_matrix(delta_rotation) @ start[:3, :3]
    return torch.cat([rotation, (start[:3, 3] + delta_translation)[:, None]], 1)
