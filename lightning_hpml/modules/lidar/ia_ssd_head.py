"""IA-SSD's centre head and its training targets and losses, with RIDE's split of the head over the two branches.

Head (``IASSD_Head`` of https://github.com/yifanzhang713/IA-SSD and https://github.com/CentauriStar/RIDE,
``pcdet/models/dense_heads/IASSD_head.py``; reimplemented, no code copied): per centre, FC stacks (Linear without bias
+ BatchNorm1d + ReLU, then a Linear with bias) predict ``num_classes`` logits and a ``6 + 2 * num_bins`` box code
(:class:`~lightning_hpml.modules.lidar.box_coder.PointBinResidualCoder`).

* Host IA-SSD: classification and the whole box code from the object-aware (OA) centre features.
* RIDE (``rotation_invariant=True``), as the RIDE head does: classification from the rotation-invariant (RI) features
  only; the six centre/size residuals from ``concat[RI, OA]`` (the ``SIZE_FC`` stack; in RIDE's coder the
  "box size" part is the first six code numbers, the centre offsets included); the heading bins and residuals from
  the OA features only (the ``REG_FC`` stack).

Targets and losses (IA-SSD's KITTI configuration):

* **Centres** (the votes): positive inside a ground-truth box (first box if several), ignored inside the box
  enlarged by ``centre_extra`` (0.2 m on each size) but outside it, negative elsewhere. Classification: sigmoid
  cross-entropy (``"bce"``, official ``WeightedCrossEntropy``) or sigmoid focal loss, against one-hot targets scaled
  by the **centerness** ``(prod_axes min(d+, d-) / max(d+, d-))^(1/3)`` of the centre in its box, weighted by
  (positives + negatives) / #positives, summed over centres and averaged over classes.
* **Box**: smooth-L1 (beta 1/9) on the six residuals, cross-entropy on the heading bin (x ``dir_weight`` 0.2) and
  smooth-L1 on the bin residual, each averaged over positive centres; a **corner loss** (smooth-L1, beta 1, on the
  distance of the 8 decoded corners to the ground truth's, the smaller of the box and its 180-degree flip) averaged
  over positives.
* **Vote**: the voting origins inside a box enlarged by ``vote_extra`` (1 m) are assigned to it; smooth-L1 (beta 1)
  between ``origin + unclipped offset`` and the box centre, averaged per class then over the classes present
  (``get_contextual_vote_loss``).
* **Instance-aware downsampling** (the confidence heads of the SA layers): the first such layer labels its points as
  the centres (ignore band ``sa_extra`` = 0.5 m); later ones assign every point inside the enlarged box to it; targets
  are scaled by centerness when the next layer samples ``ctr_aware``; the loss is averaged over those layers.

Differences from the official losses: the heading-residual smooth-L1 is averaged over positive centres (the official
averages it over all centres, negatives included, before re-weighting); with no positive centre the box, corner and
vote losses are zero (the official divides by zero); the class-specific box enlargement is not offered (unused by the
KITTI config).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.lidar.box_coder import PointBinResidualCoder
from lightning_hpml.modules.lidar.box_ops import boxes_to_corners_3d, enlarge_boxes, points_in_boxes

__all__ = ["IASSDHead", "IASSDLoss", "assign_points", "centerness"]


def _fc(in_channels: int, hidden: Sequence[int], out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for h in hidden:
        layers += [nn.Linear(c, h, bias=False), nn.BatchNorm1d(h), nn.ReLU()]
        c = h
    layers.append(nn.Linear(c, out_channels))
    return nn.Sequential(*layers)


class IASSDHead(nn.Module):
    """Per-centre classification and box-code FC stacks (see the module docstring for the RIDE split).

    Args:
        in_channels: Width of the centre features (each branch).
        num_classes: Classification outputs.
        code_size: Box-code width (``6 + 2 * num_bins``).
        cls_fc: Hidden widths of the classification stack.
        size_fc: Hidden widths of RIDE's centre/size stack (on ``2 * in_channels``); unused by the host.
        reg_fc: Hidden widths of the box stack (host: the whole code; RIDE: the heading part).
        rotation_invariant: Use RIDE's split.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        code_size: int,
        *,
        cls_fc: Sequence[int] = (256, 256),
        size_fc: Sequence[int] = (256, 256),
        reg_fc: Sequence[int] = (256, 256),
        rotation_invariant: bool = False,
    ) -> None:
        super().__init__()
        self.rotation_invariant = rotation_invariant
        self.cls_layers = _fc(in_channels, cls_fc, num_classes)
        if rotation_invariant:
            self.size_layers = _fc(2 * in_channels, size_fc, 6)
            self.box_layers = _fc(in_channels, reg_fc, code_size - 6)
        else:
            self.size_layers = None
            self.box_layers = _fc(in_channels, reg_fc, code_size)

    def forward(self, features: Tensor, ri_features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``features`` / ``ri_features`` (B, C, n) -> (logits (B, n, K), box codes (B, n, code_size))."""
        b, c, n = features.shape
        oa = features.transpose(1, 2).reshape(b * n, c)
        if not self.rotation_invariant:
            return self.cls_layers(oa).view(b, n, -1), self.box_layers(oa).view(b, n, -1)
        if ri_features is None or ri_features.shape != features.shape:
            got = None if ri_features is None else tuple(ri_features.shape)
            raise ValueError(f"RIDE head needs `ri_features` of shape {tuple(features.shape)}, got {got}")
        ri = ri_features.transpose(1, 2).reshape(b * n, c)
        logits = self.cls_layers(ri)
        codes = torch.cat([self.size_layers(torch.cat([ri, oa], dim=-1)), self.box_layers(oa)], dim=-1)
        return logits.view(b, n, -1), codes.view(b, n, -1)


def assign_points(
    points: Tensor, boxes: Tensor, labels: Tensor, *, extra: float, rule: Literal["ignore", "extend"]
) -> tuple[Tensor, Tensor]:
    """Class label (N,) (0 background, -1 ignored) and assigned box index (N,) (-1 none) of ``points`` (N, 3).

    ``"ignore"``: positive inside a box, ignored inside the box enlarged by ``extra`` but not the box itself.
    ``"extend"``: positive inside the enlarged box (a point inside an original box keeps that box).
    """
    inside = points_in_boxes(points, boxes)
    enlarged = points_in_boxes(points, enlarge_boxes(boxes, extra)) if boxes.shape[0] else inside
    if rule == "ignore":
        idx = inside
        cls = torch.where(idx >= 0, labels[idx.clamp_min(0)] if boxes.shape[0] else idx, 0)
        cls = torch.where((idx < 0) & (enlarged >= 0), -1, cls)
    elif rule == "extend":
        idx = torch.where(inside >= 0, inside, enlarged)
        cls = torch.where(idx >= 0, labels[idx.clamp_min(0)] if boxes.shape[0] else idx, 0)
    else:
        raise ValueError(f"`rule` must be 'ignore' or 'extend', got {rule!r}")
    return cls.long(), idx


def centerness(points: Tensor, boxes: Tensor) -> Tensor:
    """IA-SSD centerness ``(N,)`` of ``points`` (N, 3) in their ``boxes`` (N, 7), clamped to ``>= 1e-6`` before the cube root."""
    offset = points[:, :3] - boxes[:, :3]
    cos, sin = boxes[:, 6].cos(), boxes[:, 6].sin()
    local = torch.stack(
        [offset[:, 0] * cos + offset[:, 1] * sin, -offset[:, 0] * sin + offset[:, 1] * cos, offset[:, 2]], dim=-1
    )
    half = boxes[:, 3:6] / 2
    front, back = half - local, half + local
    ratio = torch.minimum(front, back) / torch.maximum(front, back)
    return ratio.prod(dim=-1).clamp_min(1e-6).pow(1.0 / 3.0)


def _smooth_l1(diff: Tensor, beta: float) -> Tensor:
    n = diff.abs()
    return torch.where(n < beta, 0.5 * n**2 / beta, n - 0.5 * beta) if beta >= 1e-5 else n


@dataclass
class IASSDLoss:
    """Loss settings (defaults: IA-SSD's KITTI configuration ``IA-SSD.yaml``)."""

    cls_loss: Literal["bce", "focal"] = "bce"
    """Centre and SA-confidence classification: sigmoid cross-entropy (official) or sigmoid focal loss."""
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    centre_extra: float = 0.2
    """``GT_EXTRA_WIDTH``: enlargement of the ignore band around boxes for the centre labels (m, added to l, w, h)."""
    vote_extra: float = 1.0
    """``ASSIGN_METHOD.EXTRA_WIDTH``: enlargement that assigns voting origins to boxes."""
    sa_extra: float = 0.5
    """Enlargement for the SA-layer confidence labels."""
    centerness: bool = True
    """Scale the centre classification targets by centerness (``CENTERNESS_REGULARIZATION``)."""
    cls_weight: float = 1.0
    box_weight: float = 1.0
    corner_weight: float = 1.0
    vote_weight: float = 1.0
    dir_weight: float = 0.2
    sa_weight: float = 1.0
    """``ins_aware_weight`` of every SA layer with a confidence head."""
    code_weights: tuple[float, float, float, float, float, float] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    smooth_l1_beta: float = 1.0 / 9.0

    def __post_init__(self) -> None:
        if self.cls_loss not in ("bce", "focal"):
            raise ValueError(f"`cls_loss` must be 'bce' or 'focal', got {self.cls_loss!r}")
        if len(self.code_weights) != 6:
            raise ValueError(f"`code_weights` needs 6 numbers, got {self.code_weights}")

    # ------------------------------------------------------------------ pieces
    def classification(self, logits: Tensor, labels: Tensor, scale: Tensor | None) -> tuple[Tensor, Tensor]:
        """Weighted classification loss over points ``logits`` (P, K), ``labels`` (P,); returns (loss, #pos)."""
        pos, neg = labels > 0, labels == 0
        num_pos = pos.sum()
        weights = (pos | neg).to(logits.dtype) / num_pos.clamp_min(1).to(logits.dtype)
        target = F.one_hot(labels.clamp_min(0), logits.shape[-1] + 1)[:, 1:].to(logits.dtype)
        if scale is not None:
            target = target * scale[:, None]
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        if self.cls_loss == "focal":
            p = logits.sigmoid()
            alpha = target * self.focal_alpha + (1 - target) * (1 - self.focal_alpha)
            pt = target * (1 - p) + (1 - target) * p
            bce = alpha * pt.pow(self.focal_gamma) * bce
        return (bce * weights[:, None]).mean(dim=-1).sum(), num_pos

    def box(self, codes: Tensor, targets: Tensor, num_bins: int) -> dict[str, Tensor]:
        """Residual, heading-bin and bin-residual losses of positive centres ``codes`` (P, C) vs ``targets`` (P, 8)."""
        norm = max(codes.shape[0], 1)
        cw = codes.new_tensor(self.code_weights)
        xyzlwh = (_smooth_l1((codes[:, :6] - targets[:, :6]) * cw, self.smooth_l1_beta)).sum() / norm
        bin_id = targets[:, 6].long()
        bin_cls = F.cross_entropy(codes[:, 6 : 6 + num_bins], bin_id, reduction="sum") / norm * self.dir_weight
        res = codes[:, 6 + num_bins :].gather(1, bin_id[:, None])[:, 0]
        bin_res = _smooth_l1(res - targets[:, 7], 1.0).sum() / norm
        return {"box_xyzlwh": xyzlwh, "heading_bin": bin_cls, "heading_res": bin_res}

    @staticmethod
    def corner(pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """Mean corner loss of ``pred_boxes`` vs ``gt_boxes`` (P, 7) (0 when P = 0)."""
        if pred_boxes.shape[0] == 0:
            return pred_boxes.sum() * 0
        pred = boxes_to_corners_3d(pred_boxes)
        gt = boxes_to_corners_3d(gt_boxes)
        flipped = gt_boxes.clone()
        flipped[:, 6] = flipped[:, 6] + math.pi
        gt_flip = boxes_to_corners_3d(flipped)
        dist = torch.minimum((pred - gt).norm(dim=-1), (pred - gt_flip).norm(dim=-1))
        return _smooth_l1(dist, 1.0).mean()

    # ------------------------------------------------------------------ total
    def __call__(
        self,
        outputs: dict,
        boxes: Sequence[Tensor],
        labels: Sequence[Tensor],
        coder: PointBinResidualCoder,
        ctr_aware_next: Sequence[bool],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its parts for the detector ``outputs`` and per-sample ground truth.

        ``ctr_aware_next[l]`` says whether the layer after SA layer ``l`` samples ``ctr_aware`` (centerness targets).
        """
        centres = outputs["centers"].detach()
        b = centres.shape[0]
        gather = []  # per sample: centre labels, centre gt boxes, vote labels, vote gt boxes
        for i in range(b):
            gt, lab = boxes[i].to(centres.dtype), labels[i]
            c_cls, c_idx = assign_points(centres[i], gt, lab, extra=self.centre_extra, rule="ignore")
            v_cls, v_idx = assign_points(
                outputs["centers_origin"][i].detach(), gt, lab, extra=self.vote_extra, rule="extend"
            )
            pad = torch.cat([gt, gt.new_zeros(1, 7)])  # index -1 -> zero box
            gather.append((c_cls, pad[c_idx], v_cls, pad[v_idx]))
        c_cls, c_gt, v_cls, v_gt = (torch.cat(t) for t in zip(*gather))
        flat_centres = centres.reshape(-1, 3)
        pos = c_cls > 0

        scale = None
        if self.centerness:
            scale = torch.zeros_like(flat_centres[:, 0])
            scale[pos] = centerness(flat_centres[pos], c_gt[pos])
        logits = outputs["cls_logits"].reshape(-1, outputs["cls_logits"].shape[-1])
        cls_loss, num_pos = self.classification(logits, c_cls, scale)

        codes = outputs["box_encodings"].reshape(-1, coder.code_size)[pos]
        targets = coder.encode(c_gt[pos], flat_centres[pos], c_cls[pos])
        box_parts = self.box(codes, targets, coder.num_bins)
        box_loss = sum(box_parts.values()) * self.box_weight
        corner_loss = self.corner(outputs["boxes"].reshape(-1, 7)[pos], c_gt[pos]) * self.corner_weight

        votes = (outputs["centers_origin"] + outputs["center_offsets"]).reshape(-1, 3)
        per_class = [
            F.smooth_l1_loss(votes[v_cls == k], v_gt[v_cls == k, :3]) for k in v_cls.unique().tolist() if k > 0
        ]
        vote_loss = (torch.stack(per_class).mean() if per_class else votes.sum() * 0) * self.vote_weight

        sa_terms = []
        first = True
        for layer, (xyz, layer_logits) in enumerate(zip(outputs["sa_xyz"], outputs["sa_cls_logits"])):
            if layer_logits is None:
                continue
            rule = "ignore" if first else "extend"
            first = False
            per = [
                assign_points(xyz[i].detach(), boxes[i].to(xyz.dtype), labels[i], extra=self.sa_extra, rule=rule)
                for i in range(b)
            ]
            sa_cls = torch.cat([p[0] for p in per])
            sa_scale = None
            if ctr_aware_next[layer]:
                pads = [torch.cat([boxes[i].to(xyz.dtype), xyz.new_zeros(1, 7)]) for i in range(b)]
                sa_gt = torch.cat([pads[i][p[1]] for i, p in enumerate(per)])
                sa_pos = sa_cls > 0
                sa_scale = torch.zeros_like(sa_gt[:, 0])
                sa_scale[sa_pos] = centerness(xyz.detach().reshape(-1, 3)[sa_pos], sa_gt[sa_pos])
            term, _ = self.classification(layer_logits.reshape(-1, layer_logits.shape[-1]), sa_cls, sa_scale)
            sa_terms.append(term)
        sa_loss = (torch.stack(sa_terms).mean() if sa_terms else cls_loss * 0) * self.sa_weight

        cls_loss = cls_loss * self.cls_weight
        total = cls_loss + box_loss + corner_loss + vote_loss + sa_loss
        parts = {
            "cls": cls_loss,
            "box": box_loss,
            "corner": corner_loss,
            "vote": vote_loss,
            "sa_ins": sa_loss,
            **box_parts,
            "num_pos": num_pos.to(logits.dtype),
        }
        return total, {k: v.detach() for k, v in parts.items()}
