"""Soft-argmin disparity regression over a matching-similarity volume (AANet ``DisparityEstimation``).

Facts from HKBU-HPML/EASNet ``ofa/stereo_matching/networks/estimation.py``; reimplemented, no code copied.
Difference: returns ``(B, 1, H, W)`` (the official returns ``(B, H, W)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["soft_argmin"]


def soft_argmin(similarity: Tensor) -> Tensor:
    """Expected disparity ``sum_d d * softmax_d(similarity)``: ``(B, D, H, W) -> (B, 1, H, W)`` in that scale's px."""
    if similarity.dim() != 4:
        raise ValueError(f"`similarity` must be (B, D, H, W), got shape {tuple(similarity.shape)}")
    prob = torch.softmax(similarity, dim=1)
    candidates = torch.arange(similarity.shape[1], device=similarity.device, dtype=prob.dtype).view(1, -1, 1, 1)
    return (prob * candidates).sum(dim=1, keepdim=True)
