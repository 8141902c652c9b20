"""IA-SSD, a point-based one-stage 3-D detector, and RIDE's rotation-invariant version of it.

Papers:

* IA-SSD: Y. Zhang, Q. Hu, G. Xu, Y. Ma, J. Wan, Y. Guo, "Not All Points Are Equal: Learning Highly Efficient
  Point-based Detectors for 3D LiDAR Point Clouds", CVPR 2022 (arXiv 2203.11139).
  Official code: https://github.com/yifanzhang713/IA-SSD (OpenPCDet fork, Apache-2.0).
* RIDE: X. Wang, J. Han, Y. Liu, Z. Li, "RIDE: Boosting 3D Object Detection for LiDAR Point Clouds via
  Rotation-Invariant Analysis", arXiv 2408.15643 (IEEE T-ITS). Official code: https://github.com/CentauriStar/RIDE
  (OpenPCDet fork; ``tools/cfgs/kitti_models/IA-SSD.yaml``, ``pcdet/models/backbones_3d/IASSD_backbone.py``,
  ``pcdet/models/dense_heads/IASSD_head.py``, ``pcdet/ops/pointnet2/pointnet2_batch/pointnet2_modules.py``).

Reimplemented from those facts; no code copied. Defaults reproduce the KITTI configuration ``IA-SSD.yaml``:

======  =========  ============  ==================  =========  ===============================  ======  ========
layer   input      centres       sampling            radii      shared MLPs                      aggr.   confid.
======  =========  ============  ==================  =========  ===============================  ======  ========
SA0     16384 pts  4096          D-FPS               0.2, 0.8   (16,16,32), (32,32,64)           64      --
SA1     SA0        1024          D-FPS               0.8, 1.6   (64,64,128), (64,96,128)         128     128
SA2     SA1        512           ctr_aware (SA1)     1.6, 4.8   (128,128,256), (128,256,256)     256     256
SA3     SA2        256           ctr_aware (SA2)     --         (gather only)                    --      --
vote    SA3        256 votes     MLP 128, offset clipped to +-(3, 3, 2) m
SA4     SA2 pts    the votes     --                  4.8, 6.4   (256,256,512), (256,512,1024)    512     --
head    512-d centre features; cls / box FC (256, 256); 12 heading bins; mean sizes per class
======  =========  ============  ==================  =========  ===============================  ======  ========

With ``rotation_invariant=True`` every SA layer becomes RIDE's **Bi-SA** layer
(:class:`~lightning_hpml.modules.layers.set_abstraction.SetAbstraction`): a parallel branch groups the previous layer's
rotation-invariant (RI) features with the object-aware (OA) branch's indices, prepends the 9 channels of
:func:`~lightning_hpml.modules.lidar.rotation_invariant.rotation_invariant_features`, and runs its own shared MLPs and
aggregation of the same widths; the first RI input is the point features (reflectance). Sampling (D-FPS and the
``ctr_aware`` scores), the confidence heads and the vote layer use the OA branch only, as in RIDE. The head is split
(:class:`~lightning_hpml.modules.lidar.ia_ssd_head.IASSDHead`): classification from RI, centre/size residuals from
``concat[RI, OA]``, heading from OA.

Classification is invariant to a rotation of the scene about the sensor's vertical axis only when the sampled
centres rotate with the scene: D-FPS does (it depends on distances only); ``ctr_aware`` sampling and the votes depend
on the rotation-sensitive OA branch, so a strictly invariant variant uses ``sample_methods`` all ``"D-FPS"`` and
``max_translate_range=(0, 0, 0)`` (votes at their origins), which is what the test of invariance does.

Inputs: ``points`` a list of B tensors ``(N, 3 + num_point_features)`` (x, y, z, then e.g. reflectance) with the
same N (the data pipeline samples a fixed number of points, 16384 for KITTI). Outputs of :meth:`IASSD.forward` (dict):

* ``centers`` (B, n, 3): the votes (the detection centres); ``centers_origin`` (B, n, 3): their origins (SA3 points);
  ``center_offsets`` (B, n, 3): unclipped vote offsets;
* ``cls_logits`` (B, n, K); ``box_encodings`` (B, n, 6 + 2 * bins); ``boxes`` (B, n, 7) decoded with the arg-max
  class's mean size;
* ``sa_xyz``: list of the SA0..SA3 centres (B, n_l, 3); ``sa_cls_logits``: list of their confidence logits
  (B, n_l, K) or None;
* ``center_features`` (B, C, n) OA features of the centres; ``center_ri_features`` (B, C, n) or None.

Deliberate differences from the official code:

* Pure-PyTorch FPS, ball query and gathering (no CUDA extensions); float32 or float64, any device.
* Box NMS in :meth:`IASSD.predict_boxes` uses :func:`lightning_hpml.metrics.rotated_iou.rotated_bev_iou`
  (greedy, class-agnostic, as ``nms_gpu`` with ``MULTI_CLASSES_NMS: False``).
* Loss differences are listed in :mod:`lightning_hpml.modules.lidar.ia_ssd_head`; heading wrapping in
  :mod:`lightning_hpml.modules.lidar.box_coder`.
* Unused config branches are not offered (F-FPS, range-split sampling, dilated grouping, IoU head, SKFusion).
* All per-layer widths / counts are constructor arguments; :func:`ia_ssd_tiny` is a narrow CPU-test size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_hpml.modules.layers.set_abstraction import SAMPLE_METHODS, SetAbstraction, VoteLayer
from lightning_hpml.modules.lidar.box_coder import PointBinResidualCoder
from lightning_hpml.modules.lidar.box_ops import bev_nms, check_boxes
from lightning_hpml.modules.lidar.ia_ssd_head import IASSDHead, IASSDLoss
from lightning_hpml.modules.registry import register_model

__all__ = ["IASSD", "ia_ssd", "ia_ssd_tiny", "ride_ia_ssd", "ride_ia_ssd_tiny"]

KITTI_MEAN_SIZES = ((3.9, 1.6, 1.56), (0.8, 0.6, 1.73), (1.76, 0.6, 1.73))  # Car, Pedestrian, Cyclist (l, w, h)


class IASSD(nn.Module):
    """IA-SSD detector; ``rotation_invariant=True`` gives RIDE's Bi-SA version (see the module docstring).

    Args:
        num_classes: Object classes (labels are 1-based).
        num_point_features: Point channels after x, y, z (1 = reflectance for KITTI).
        npoints: Centres of SA0..SA3.
        sample_methods: Sampling of SA0..SA3 (``"D-FPS"`` or ``"ctr_aware"``).
        radii, nsamples, mlps: Per SA0..SA3 layer: ball radii, neighbours, shared-MLP widths per scale (empty = gather).
        aggregation_mlps: Per SA0..SA3 layer: aggregation widths (ignored by gather-only layers).
        confidence_mlps: Per SA0..SA3 layer: confidence-head hidden widths (empty = no head).
        vote_mlp: Hidden widths of the vote layer; ``max_translate_range``: per-axis clip of the vote offsets (m).
        centre_radii, centre_nsamples, centre_mlps, centre_aggregation_mlp: The final SA layer around the votes
            (groups the SA2 points).
        cls_fc, size_fc, reg_fc: Head FC widths.
        mean_sizes: Per-class mean ``(l, w, h)``; ``num_heading_bins``: heading bins.
        rotation_invariant: RIDE's Bi-SA layers and split head.
        loss: Loss settings (:class:`~lightning_hpml.modules.lidar.ia_ssd_head.IASSDLoss`); None = defaults.
    """

    def __init__(
        self,
        num_classes: int = 3,
        num_point_features: int = 1,
        npoints: Sequence[int] = (4096, 1024, 512, 256),
        sample_methods: Sequence[str] = ("D-FPS", "D-FPS", "ctr_aware", "ctr_aware"),
        radii: Sequence[Sequence[float]] = ((0.2, 0.8), (0.8, 1.6), (1.6, 4.8), ()),
        nsamples: Sequence[Sequence[int]] = ((16, 32), (16, 32), (16, 32), ()),
        mlps: Sequence[Sequence[Sequence[int]]] = (
            ((16, 16, 32), (32, 32, 64)),
            ((64, 64, 128), (64, 96, 128)),
            ((128, 128, 256), (128, 256, 256)),
            (),
        ),
        aggregation_mlps: Sequence[Sequence[int]] = ((64,), (128,), (256,), ()),
        confidence_mlps: Sequence[Sequence[int]] = ((), (128,), (256,), ()),
        vote_mlp: Sequence[int] = (128,),
        max_translate_range: Sequence[float] | None = (3.0, 3.0, 2.0),
        centre_radii: Sequence[float] = (4.8, 6.4),
        centre_nsamples: Sequence[int] = (16, 32),
        centre_mlps: Sequence[Sequence[int]] = ((256, 256, 512), (256, 512, 1024)),
        centre_aggregation_mlp: Sequence[int] = (512,),
        cls_fc: Sequence[int] = (256, 256),
        size_fc: Sequence[int] = (256, 256),
        reg_fc: Sequence[int] = (256, 256),
        mean_sizes: Sequence[Sequence[float]] = KITTI_MEAN_SIZES,
        num_heading_bins: int = 12,
        rotation_invariant: bool = False,
        loss: IASSDLoss | None = None,
    ) -> None:
        super().__init__()
        per_layer = {
            "npoints": npoints,
            "sample_methods": sample_methods,
            "radii": radii,
            "nsamples": nsamples,
            "mlps": mlps,
            "aggregation_mlps": aggregation_mlps,
            "confidence_mlps": confidence_mlps,
        }
        if len({len(v) for v in per_layer.values()}) != 1:
            raise ValueError(
                f"per-layer settings need the same length, got { {k: len(v) for k, v in per_layer.items()} }"
            )
        if num_classes < 1 or num_point_features < 0:
            raise ValueError(
                f"need num_classes >= 1 and num_point_features >= 0, got {num_classes}, {num_point_features}"
            )
        if len(mean_sizes) != num_classes:
            raise ValueError(f"`mean_sizes` needs one (l, w, h) per class ({num_classes}), got {len(mean_sizes)}")
        for i, m in enumerate(sample_methods):
            if m not in SAMPLE_METHODS:
                raise ValueError(f"`sample_methods[{i}]` must be one of {SAMPLE_METHODS}, got {m!r}")
            if m == "ctr_aware" and (i == 0 or not confidence_mlps[i - 1]):
                raise ValueError(f"layer {i} samples 'ctr_aware' but layer {i - 1} has no confidence MLP")
        if any(not r for r in radii[:1]):
            raise ValueError("the first SA layer must group (non-empty `radii[0]`)")
        self.num_classes = num_classes
        self.num_point_features = num_point_features
        self.sample_methods = tuple(sample_methods)
        self.rotation_invariant = rotation_invariant
        self.loss_config = loss if loss is not None else IASSDLoss()

        self.sa_layers = nn.ModuleList()
        channels = num_point_features
        for i in range(len(npoints)):
            layer = SetAbstraction(
                channels,
                npoint=int(npoints[i]),
                sample_method=sample_methods[i],
                radii=radii[i],
                nsamples=nsamples[i],
                mlps=mlps[i],
                aggregation_channels=aggregation_mlps[i],
                confidence_mlp=confidence_mlps[i],
                num_classes=num_classes,
                rotation_invariant=rotation_invariant,
            )
            self.sa_layers.append(layer)
            channels = layer.out_channels
        self.vote = VoteLayer(channels, vote_mlp, max_translate_range)
        # The centre layer groups the points of the layer before the last (SA2 for the official 4 layers).
        self._centre_input = len(npoints) - 2 if len(npoints) >= 2 else 0
        centre_in = self.sa_layers[self._centre_input].out_channels
        self.centre_layer = SetAbstraction(
            centre_in,
            npoint=None,
            radii=centre_radii,
            nsamples=centre_nsamples,
            mlps=centre_mlps,
            aggregation_channels=centre_aggregation_mlp,
            num_classes=num_classes,
            rotation_invariant=rotation_invariant,
        )
        self.coder = PointBinResidualCoder(mean_sizes, num_heading_bins)
        self.head = IASSDHead(
            self.centre_layer.out_channels,
            num_classes,
            self.coder.code_size,
            cls_fc=cls_fc,
            size_fc=size_fc,
            reg_fc=reg_fc,
            rotation_invariant=rotation_invariant,
        )

    # ------------------------------------------------------------------ forward
    def _stack_points(self, points: Sequence[Tensor]) -> tuple[Tensor, Tensor | None]:
        channels = 3 + self.num_point_features
        if isinstance(points, Tensor) or len(points) == 0:
            raise ValueError("`points` must be a non-empty list of (N, 3 + num_point_features) tensors, one per sample")
        for i, p in enumerate(points):
            if not isinstance(p, Tensor) or p.ndim != 2 or p.shape[1] != channels or not p.is_floating_point():
                got = tuple(p.shape) if isinstance(p, Tensor) else type(p).__name__
                raise ValueError(
                    f"`points[{i}]` must be a floating (N, {channels}) tensor (x, y, z + features), got {got}"
                )
        sizes = {p.shape[0] for p in points}
        if len(sizes) != 1:
            raise ValueError(
                f"all `points` must have the same number of points (sample a fixed number, e.g. 16384), got {sorted(sizes)}"
            )
        stacked = torch.stack(list(points))
        xyz = stacked[..., :3].contiguous()
        feats = stacked[..., 3:].transpose(1, 2).contiguous() if self.num_point_features else None
        return xyz, feats

    def forward(self, points: Sequence[Tensor]) -> dict:
        """Per-centre predictions for a batch of point clouds (keys in the module docstring)."""
        xyz, features = self._stack_points(points)
        ri = features
        logits = None
        levels = [(xyz, features, ri)]
        sa_xyz, sa_logits = [], []
        for layer in self.sa_layers:
            out = layer(xyz, features, cls_logits=logits, ri_features=ri if self.rotation_invariant else None)
            xyz, features, ri, logits = out["xyz"], out["features"], out["ri_features"], out["cls_logits"]
            levels.append((xyz, features, ri))
            sa_xyz.append(xyz)
            sa_logits.append(logits)
        votes, offsets = self.vote(xyz, features)
        src_xyz, src_feat, src_ri = levels[self._centre_input + 1]
        centre = self.centre_layer(
            src_xyz, src_feat, ri_features=src_ri if self.rotation_invariant else None, centres=votes
        )
        cls_logits, codes = self.head(centre["features"], centre["ri_features"])
        b, n, _ = votes.shape
        pred_cls = cls_logits.detach().argmax(dim=-1).reshape(-1) + 1
        boxes = self.coder.decode(codes.reshape(b * n, -1), votes.reshape(b * n, 3), pred_cls).view(b, n, 7)
        return {
            "centers": votes,
            "centers_origin": xyz,
            "center_offsets": offsets,
            "cls_logits": cls_logits,
            "box_encodings": codes,
            "boxes": boxes,
            "sa_xyz": sa_xyz,
            "sa_cls_logits": sa_logits,
            "center_features": centre["features"],
            "center_ri_features": centre["ri_features"],
        }

    # ------------------------------------------------------------------ training
    def loss(
        self, outputs: dict, boxes: Sequence[Tensor], labels: Sequence[Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total training loss and its (detached) parts.

        Args:
            outputs: :meth:`forward` output.
            boxes: Per sample ``(M_i, 7)`` ground-truth boxes (x, y, z_centre, l, w, h, yaw), LiDAR frame.
            labels: Per sample ``(M_i,)`` classes in ``1..num_classes``.

        Returns:
            ``(total, parts)``; parts: ``cls``, ``box``, ``corner``, ``vote``, ``sa_ins``, ``box_xyzlwh``,
            ``heading_bin``, ``heading_res``, ``num_pos``.
        """
        b = outputs["centers"].shape[0]
        if len(boxes) != b or len(labels) != b:
            raise ValueError(
                f"`boxes` and `labels` need one entry per sample ({b}), got {len(boxes)} and {len(labels)}"
            )
        for i, (bx, lb) in enumerate(zip(boxes, labels)):
            check_boxes(f"boxes[{i}]", bx)
            if lb.shape != bx.shape[:1] or lb.is_floating_point():
                raise ValueError(
                    f"`labels[{i}]` must be an integer ({bx.shape[0]},) tensor, got {lb.dtype} {tuple(lb.shape)}"
                )
            if lb.numel() and (int(lb.min()) < 1 or int(lb.max()) > self.num_classes):
                raise ValueError(f"`labels[{i}]` must be 1-based classes in [1, {self.num_classes}], got {lb.tolist()}")
        ctr_next = [m == "ctr_aware" for m in self.sample_methods[1:]] + [False]
        return self.loss_config(outputs, boxes, labels, self.coder, ctr_next)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_boxes(
        self,
        outputs: dict,
        score_threshold: float = 0.1,
        nms_iou: float = 0.01,
        max_boxes: int = 500,
        nms_pre_max: int = 4096,
    ) -> list[dict[str, Tensor]]:
        """Boxes after score filtering and class-agnostic rotated BEV NMS (official post-processing defaults).

        Returns one dict per sample: ``boxes`` (K, 7), ``scores`` (K,) = max sigmoid class score, ``labels`` (K,)
        1-based.
        """
        results = []
        probs = outputs["cls_logits"].sigmoid()
        for i in range(probs.shape[0]):
            scores, labels = probs[i].max(dim=-1)
            keep = scores > score_threshold
            boxes, scores, labels = outputs["boxes"][i][keep], scores[keep], labels[keep] + 1
            top = scores.argsort(descending=True)[:nms_pre_max]
            boxes, scores, labels = boxes[top], scores[top], labels[top]
            kept = bev_nms(boxes, scores, nms_iou)[:max_boxes]
            results.append({"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]})
        return results


_TINY = {
    "npoints": (512, 256, 128, 64),
    "radii": ((0.4, 1.2), (1.2, 2.4), (2.4, 4.8), ()),
    "nsamples": ((8, 16), (8, 16), (8, 16), ()),
    "mlps": (((8, 16), (8, 16)), ((16, 32), (16, 32)), ((32, 32), (32, 32)), ()),
    "aggregation_mlps": ((16,), (32,), (32,), ()),
    "confidence_mlps": ((), (16,), (32,), ()),
    "vote_mlp": (32,),
    "centre_radii": (4.8, 6.4),
    "centre_nsamples": (8, 16),
    "centre_mlps": ((32, 64), (32, 64)),
    "centre_aggregation_mlp": (64,),
    "cls_fc": (32,),
    "size_fc": (32,),
    "reg_fc": (32,),
}


@register_model
def ia_ssd(**kwargs) -> IASSD:
    """IA-SSD with the official KITTI configuration (16384 input points)."""
    return IASSD(**kwargs)


@register_model
def ia_ssd_tiny(**kwargs) -> IASSD:
    """Narrow IA-SSD for CPU tests: ~1024 input points, centres 512/256/128/64."""
    return IASSD(**{**_TINY, **kwargs})


@register_model
def ride_ia_ssd(**kwargs) -> IASSD:
    """RIDE on IA-SSD (Bi-SA layers, split head), official KITTI configuration."""
    return IASSD(**{"rotation_invariant": True, **kwargs})


@register_model
def ride_ia_ssd_tiny(**kwargs) -> IASSD:
    """RIDE on the tiny IA-SSD."""
    return IASSD(**{**_TINY, "rotation_invariant": True, **kwargs})
