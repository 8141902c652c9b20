r"""Camera-pose accuracy after similarity alignment, as CF-NeRF / NeRFmm / BARF evaluate learned cameras.

Learned cameras live in an arbitrary frame and scale, so the predicted camera centres are first aligned to the ground
truth with the Sim(3) transform of Umeyama (1991), "Least-squares estimation of transformation parameters between two
point patterns": :math:`\min_{s,R,t} \sum_i \|y_i - (s R x_i + t)\|^2`. The alignment is applied to the predicted
rotations too. Then (CF-NeRF ``eval_poses/eval_ate.py``):

* rotation error: mean geodesic angle :math:`\arccos((\mathrm{tr}(R_a R_{gt}^T) - 1) / 2)` in degrees;
* translation error: mean distance between aligned and true camera centres, in ground-truth units.

Poses are camera-to-world (N, 4, 4) in the OpenCV convention (any convention works if both sides share it).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["apply_similarity", "camera_pose_errors", "rotation_angle_deg", "umeyama_alignment"]


def umeyama_alignment(source: Tensor, target: Tensor, with_scale: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """``(scale, rotation (3, 3), translation (3,))`` minimising ``|target - (s R source + t)|^2`` over points (N, 3)."""
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3 or source.shape[0] < 3:
        raise ValueError(f"need two (N, 3) point sets with N >= 3, got {tuple(source.shape)} and {tuple(target.shape)}")
    source, target = source.double(), target.double()
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    covariance = xt.T @ xs / source.shape[0]
    u, singular, vh = torch.linalg.svd(covariance)
    sign = torch.ones(3, dtype=torch.float64)
    if torch.det(u) * torch.det(vh) < 0:
        sign[2] = -1.0
    rotation = u @ torch.diag(sign) @ vh
    variance = xs.pow(2).sum() / source.shape[0]
    scale = (singular * sign).sum() / variance if with_scale else torch.ones((), dtype=torch.float64)
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation, translation


def apply_similarity(camera_to_world: Tensor, scale: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """Map camera-to-world poses (N, 4, 4) through ``x -> s R x + t`` (centres move, orientations rotate)."""
    poses = camera_to_world.double().clone()
    poses[:, :3, :3] = rotation @ poses[:, :3, :3]
    poses[:, :3, 3] = scale * poses[:, :3, 3] @ rotation.T + translation
    return poses


def rotation_angle_deg(a: Tensor, b: Tensor) -> Tensor:
    """Geodesic angle (N,) in degrees between rotation matrices (N, 3, 3)."""
    cosine = ((a.double() @ b.double().transpose(-1, -2)).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))


def camera_pose_errors(predicted: Tensor, ground_truth: Tensor) -> dict[str, float | Tensor]:
    """Errors of predicted camera-to-world poses after Sim(3) alignment of their centres to the ground truth.

    Returns ``rotation_deg`` and ``translation`` (means), per-camera ``rotation_deg_each`` / ``translation_each``,
    and the alignment ``scale``, ``rotation``, ``translation_offset`` with ``aligned`` poses.
    """
    scale, rotation, offset = umeyama_alignment(predicted[:, :3, 3], ground_truth[:, :3, 3])
    aligned = apply_similarity(predicted, scale, rotation, offset)
    angles = rotation_angle_deg(aligned[:, :3, :3], ground_truth[:, :3, :3])
    distances = (aligned[:, :3, 3] - ground_truth.double()[:, :3, 3]).norm(dim=-1)
    return {
        "rotation_deg": float(angles.mean()),
        "translation": float(distances.mean()),
        "rotation_deg_each": angles,
        "translation_each": distances,
        "scale": scale,
        "rotation": rotation,
        "translation_offset": offset,
        "aligned": aligned,
    }
