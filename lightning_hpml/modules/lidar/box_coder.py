"""IA-SSD's point-residual box coder with a binned heading (OpenPCDet ``PointResidual_BinOri_Coder``).

Reimplemented from the formulas of https://github.com/yifanzhang713/IA-SSD (``pcdet/utils/box_coder_utils.py``);
no code copied. For a box ``(x, y, z, l, w, h, yaw)`` of class ``c`` seen from a point ``(xa, ya, za)``, with the class
mean size ``(la, wa, ha)`` and ``diag = sqrt(la^2 + wa^2)``, the 8-number target is::

    ((x - xa) / diag, (y - ya) / diag, (z - za) / ha, log(l / la), log(w / wa), log(h / ha), bin, res)

with ``bin = floor((yaw + pi) / step)`` over ``num_bins`` bins of ``step = 2 pi / num_bins`` and
``res = ((yaw + pi) - (bin + 1/2) step) / (step / 2)`` in ``[-1, 1]``. A prediction has ``6 + 2 * num_bins`` numbers:
the six residuals, ``num_bins`` bin logits and ``num_bins`` residuals (the one of the arg-max bin is used).

Difference from the official coder: the yaw is first wrapped into ``[-pi, pi)`` (the official clamps it, which
mis-encodes boxes whose yaw lies outside that range); identical for in-range yaws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["PointBinResidualCoder"]


class PointBinResidualCoder(nn.Module):
    """Encode/decode boxes relative to points with per-class mean sizes and ``num_bins`` heading bins."""

    def __init__(self, mean_sizes: Sequence[Sequence[float]], num_bins: int = 12) -> None:
        super().__init__()
        sizes = torch.as_tensor(mean_sizes, dtype=torch.float32)
        if sizes.ndim != 2 or sizes.shape[1] != 3 or not bool((sizes > 0).all()):
            raise ValueError(f"`mean_sizes` must be (num_classes, 3) positive (l, w, h), got {mean_sizes}")
        if num_bins < 1:
            raise ValueError(f"`num_bins` must be >= 1, got {num_bins}")
        self.num_bins = int(num_bins)
        self.bin_step = 2 * math.pi / num_bins
        self.register_buffer("mean_sizes", sizes, persistent=False)

    @property
    def code_size(self) -> int:
        """Prediction width: 6 residuals + bin logits + bin residuals."""
        return 6 + 2 * self.num_bins

    def _anchor(self, classes: Tensor, dtype: torch.dtype) -> Tensor:
        if classes.numel() and (int(classes.min()) < 1 or int(classes.max()) > self.mean_sizes.shape[0]):
            raise ValueError(f"classes must be in [1, {self.mean_sizes.shape[0]}], got {classes.unique().tolist()}")
        return self.mean_sizes.to(dtype)[classes.long() - 1]

    def encode(self, boxes: Tensor, points: Tensor, classes: Tensor) -> Tensor:
        """Targets ``(N, 8)`` for ``boxes`` (N, 7) seen from ``points`` (N, 3) with 1-based ``classes`` (N,)."""
        anchor = self._anchor(classes, boxes.dtype)
        diag = anchor[:, :2].norm(dim=-1, keepdim=True)
        xy = (boxes[:, 0:2] - points[:, 0:2]) / diag
        z = (boxes[:, 2:3] - points[:, 2:3]) / anchor[:, 2:3]
        size = torch.log(boxes[:, 3:6].clamp_min(1e-5) / anchor)
        yaw = torch.remainder(boxes[:, 6] + math.pi, 2 * math.pi)  # in [0, 2 pi)
        bin_id = torch.floor(yaw / self.bin_step).clamp(0, self.num_bins - 1)
        res = (yaw - (bin_id + 0.5) * self.bin_step) / (self.bin_step / 2)
        return torch.cat([xy, z, size, bin_id[:, None], res[:, None]], dim=-1)

    def decode(self, encodings: Tensor, points: Tensor, classes: Tensor) -> Tensor:
        """Boxes ``(N, 7)`` from predictions ``(N, 6 + 2 * num_bins)`` at ``points`` (N, 3) for ``classes`` (N,)."""
        if encodings.shape[-1] != self.code_size:
            raise ValueError(f"`encodings` must have {self.code_size} columns, got {tuple(encodings.shape)}")
        anchor = self._anchor(classes, encodings.dtype)
        diag = anchor[:, :2].norm(dim=-1, keepdim=True)
        xy = encodings[:, 0:2] * diag + points[:, 0:2]
        z = encodings[:, 2:3] * anchor[:, 2:3] + points[:, 2:3]
        size = encodings[:, 3:6].exp() * anchor
        logits = encodings[:, 6 : 6 + self.num_bins]
        residuals = encodings[:, 6 + self.num_bins :]
        bin_id = logits.argmax(dim=-1, keepdim=True)
        res = residuals.gather(1, bin_id)
        yaw = (bin_id.to(encodings.dtype) + 0.5) * self.bin_step - math.pi + res * (self.bin_step / 2)
        return torch.cat([xy, z, size, yaw], dim=-1)
