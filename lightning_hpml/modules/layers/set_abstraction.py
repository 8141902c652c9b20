"""PointNet++ set abstraction with IA-SSD's sampling, RIDE's bi-feature (Bi-SA) branch, and IA-SSD's vote layer.

Follows ``PointnetSAModuleMSG_WithSampling`` and ``Vote_layer`` of the RIDE repository
(https://github.com/CentauriStar/RIDE, ``pcdet/ops/pointnet2/pointnet2_batch/pointnet2_modules.py``), which extends
IA-SSD's (https://github.com/yifanzhang713/IA-SSD) layer with a rotation-invariant branch; reimplemented, no code
copied. One layer:

1. **Sampling** of ``npoint`` centres from the input points: ``"D-FPS"`` (farthest point sampling on xyz) or
   ``"ctr_aware"`` (IA-SSD's instance-aware sampling: the ``npoint`` points with the highest
   ``sigmoid(max_class(logit))`` of the previous layer's confidence head, in descending order). If the input has no
   more than ``npoint`` points, all are kept in order. The final layer instead takes given centres (the votes).
2. **Multi-scale grouping**: for each radius a ball query (first ``nsample`` points), the relative xyz concatenated
   with the grouped features, a shared MLP (1x1 Conv2d without bias + BatchNorm + ReLU), max-pool over neighbours;
   scales concatenated; then an aggregation Conv1d + BN + ReLU. A layer without radii only gathers the features of
   the sampled points.
3. **Bi-SA (RIDE)**, with ``rotation_invariant=True``: with the *same* neighbour indices, the previous layer's
   rotation-invariant (RI) features are grouped and concatenated after the 9 channels of
   :func:`~lightning_hpml.modules.lidar.rotation_invariant.rotation_invariant_features`; a second set of shared MLPs
   of the same widths (input +6 wider than the object-aware one, whose +3 is the xyz), max-pool, concatenation over
   radii and a separate aggregation Conv1d give the RI features of the layer. The RI branch never samples by itself.
4. **Confidence head** (IA-SSD's instance-aware supervision): Conv1d + BN + ReLU layers and a final Conv1d with bias
   to ``num_classes`` logits, computed from the object-aware features (as in RIDE); the next ``ctr_aware`` layer
   samples by these scores.

Differences from the official code: pure-PyTorch FPS / ball query / gather (:mod:`~lightning_hpml.modules.layers.
point_ops`) instead of the CUDA extensions; only the samplers IA-SSD uses (D-FPS, ctr_aware) are offered (no F-FPS,
range-split sampling, dilated grouping or average pooling); an empty ball groups point 0 as the CUDA kernel does.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_hpml.modules.layers.point_ops import ball_query, farthest_point_sample, gather_points, group_points

__all__ = ["SAMPLE_METHODS", "SetAbstraction", "VoteLayer", "sample_indices"]

SAMPLE_METHODS = ("D-FPS", "ctr_aware")
NUM_RI_CHANNELS = 9  # lightning_hpml.modules.lidar.rotation_invariant.NUM_RI_CHANNELS


def _ri_features(grouped_rel_xyz: Tensor, centres: Tensor) -> Tensor:
    # Imported here: ``modules.lidar`` imports this module, so a top-level import would be circular.
    from lightning_hpml.modules.lidar.rotation_invariant import rotation_invariant_features

    return rotation_invariant_features(grouped_rel_xyz, centres)


def _mlp2d(channels: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers)


def _mlp1d(channels: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [nn.Conv1d(c_in, c_out, kernel_size=1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]
    return nn.Sequential(*layers)


def sample_indices(method: str, xyz: Tensor, npoint: int, cls_logits: Tensor | None = None) -> Tensor:
    """Indices ``(B, npoint)`` of the centres chosen by ``method`` among ``xyz`` (B, N, 3).

    ``cls_logits`` (B, N, num_classes) is required for ``"ctr_aware"``. When ``N <= npoint`` every point is kept.
    """
    b, num, _ = xyz.shape
    if num <= npoint:
        return torch.arange(num, device=xyz.device).expand(b, num)
    if method == "D-FPS":
        return farthest_point_sample(xyz, npoint)
    if method == "ctr_aware":
        if cls_logits is None or cls_logits.shape[:2] != (b, num):
            got = None if cls_logits is None else tuple(cls_logits.shape)
            raise ValueError(
                f"'ctr_aware' sampling needs the previous layer's confidence logits (B, N, num_classes) with "
                f"(B, N) = {(b, num)}, got {got}; put a confidence MLP on the layer before"
            )
        scores = cls_logits.detach().max(dim=-1).values.sigmoid()
        return scores.topk(npoint, dim=-1).indices
    raise ValueError(f"unknown sampling method {method!r}; expected one of {SAMPLE_METHODS}")


class SetAbstraction(nn.Module):
    """One IA-SSD set-abstraction layer, optionally a RIDE Bi-SA layer (see the module docstring).

    Args:
        in_channels: Feature channels of the input points (without xyz); also the RI input width.
        npoint: Centres to sample, or ``None`` for a layer that is given its centres (``forward(centres=...)``).
        sample_method: ``"D-FPS"`` or ``"ctr_aware"``.
        radii: Ball radii, one per scale; empty for a gather-only layer.
        nsamples: Neighbours per ball, one per scale.
        mlps: Shared-MLP widths per scale (without the input width).
        aggregation_channels: Widths of the aggregation Conv1d stack after concatenating the scales (may be empty).
        confidence_mlp: Hidden widths of the confidence head, or empty for none.
        num_classes: Confidence head outputs.
        rotation_invariant: Add RIDE's rotation-invariant branch.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        npoint: int | None,
        sample_method: str = "D-FPS",
        radii: Sequence[float] = (),
        nsamples: Sequence[int] = (),
        mlps: Sequence[Sequence[int]] = (),
        aggregation_channels: Sequence[int] = (),
        confidence_mlp: Sequence[int] = (),
        num_classes: int = 3,
        rotation_invariant: bool = False,
    ) -> None:
        super().__init__()
        if not len(radii) == len(nsamples) == len(mlps):
            raise ValueError(
                f"`radii`, `nsamples` and `mlps` need one entry per scale, got {len(radii)}, {len(nsamples)}, {len(mlps)}"
            )
        if npoint is not None and npoint < 1:
            raise ValueError(f"`npoint` must be >= 1 or None, got {npoint}")
        if sample_method not in SAMPLE_METHODS:
            raise ValueError(f"`sample_method` must be one of {SAMPLE_METHODS}, got {sample_method!r}")
        if any(not r > 0 for r in radii) or any(k < 1 for k in nsamples) or any(len(m) == 0 for m in mlps):
            raise ValueError(f"radii must be > 0, nsamples >= 1, mlps non-empty; got {radii}, {nsamples}, {mlps}")
        self.in_channels = in_channels
        self.npoint = npoint
        self.sample_method = sample_method
        self.radii = tuple(float(r) for r in radii)
        self.nsamples = tuple(int(k) for k in nsamples)
        self.rotation_invariant = rotation_invariant
        self.mlps = nn.ModuleList(_mlp2d([in_channels + 3, *m]) for m in mlps)
        self.ri_mlps = nn.ModuleList(
            _mlp2d([in_channels + NUM_RI_CHANNELS, *m]) for m in (mlps if rotation_invariant else ())
        )
        out = sum(m[-1] for m in mlps) if mlps else in_channels
        self.aggregation = self.ri_aggregation = None
        if mlps and aggregation_channels:
            self.aggregation = _mlp1d([out, *aggregation_channels])
            if rotation_invariant:
                self.ri_aggregation = _mlp1d([out, *aggregation_channels])
            out = aggregation_channels[-1]
        self.out_channels = out
        self.confidence = None
        if confidence_mlp:
            self.confidence = nn.Sequential(
                _mlp1d([out, *confidence_mlp]), nn.Conv1d(confidence_mlp[-1], num_classes, kernel_size=1)
            )

    def forward(
        self,
        xyz: Tensor,
        features: Tensor | None,
        *,
        cls_logits: Tensor | None = None,
        ri_features: Tensor | None = None,
        centres: Tensor | None = None,
    ) -> dict[str, Tensor | None]:
        """Run the layer.

        Args:
            xyz: Input points ``(B, N, 3)``.
            features: Their features ``(B, C, N)`` (``None`` when ``in_channels == 0``).
            cls_logits: Confidence logits of the input points ``(B, N, K)`` (for ``ctr_aware`` sampling).
            ri_features: RI features of the input points ``(B, C, N)`` (RI layers; ``None`` when ``in_channels == 0``).
            centres: Given centres ``(B, n, 3)`` for a layer built with ``npoint=None``.

        Returns:
            dict with ``xyz`` (B, n, 3), ``features`` (B, C', n), ``ri_features`` (B, C', n) or None,
            ``cls_logits`` (B, n, K) or None, ``sample_idx`` (B, n) or None (given centres).
        """
        if xyz.ndim != 3 or xyz.shape[-1] != 3:
            raise ValueError(f"`xyz` must be (B, N, 3), got {tuple(xyz.shape)}")
        b, num, _ = xyz.shape
        for name, feat in (("features", features), ("ri_features", ri_features)):
            if feat is not None and feat.shape != (b, self.in_channels, num):
                raise ValueError(f"`{name}` must be (B, C, N) = {(b, self.in_channels, num)}, got {tuple(feat.shape)}")
        if self.in_channels > 0 and features is None:
            raise ValueError(f"`features` (B, {self.in_channels}, N) is required for this layer")
        if self.rotation_invariant and self.in_channels > 0 and ri_features is None:
            raise ValueError(f"`ri_features` (B, {self.in_channels}, N) is required for a rotation-invariant layer")
        sample_idx = None
        if self.npoint is None:
            if centres is None or centres.ndim != 3 or centres.shape[0] != b or centres.shape[-1] != 3:
                got = None if centres is None else tuple(centres.shape)
                raise ValueError(f"this layer takes its centres: `centres` must be (B={b}, n, 3), got {got}")
            new_xyz = centres
        else:
            sample_idx = sample_indices(self.sample_method, xyz, self.npoint, cls_logits)
            new_xyz = xyz.gather(1, sample_idx.unsqueeze(-1).expand(-1, -1, 3))

        ri_out = None
        if not self.radii:
            if sample_idx is None:
                raise ValueError("a layer without radii must sample its centres (`npoint` must not be None)")
            new_features = (
                gather_points(features, sample_idx)
                if features is not None
                else xyz.new_zeros(b, 0, sample_idx.shape[1])
            )
            if self.rotation_invariant and ri_features is not None:
                ri_out = gather_points(ri_features, sample_idx)
        else:
            xyz_t = xyz.transpose(1, 2)
            pooled, ri_pooled = [], []
            for i, (radius, nsample) in enumerate(zip(self.radii, self.nsamples)):
                idx = ball_query(radius, nsample, xyz, new_xyz)
                rel = group_points(xyz_t, idx) - new_xyz.transpose(1, 2).unsqueeze(-1)  # (B, 3, n, k)
                grouped = rel if features is None else torch.cat([rel, group_points(features, idx)], dim=1)
                pooled.append(self.mlps[i](grouped).max(dim=-1).values)
                if self.rotation_invariant:
                    ri = _ri_features(rel.permute(0, 2, 3, 1), new_xyz)
                    if ri_features is not None:
                        ri = torch.cat([ri, group_points(ri_features, idx)], dim=1)
                    ri_pooled.append(self.ri_mlps[i](ri).max(dim=-1).values)
            new_features = torch.cat(pooled, dim=1)
            if self.aggregation is not None:
                new_features = self.aggregation(new_features)
            if self.rotation_invariant:
                ri_out = torch.cat(ri_pooled, dim=1)
                if self.ri_aggregation is not None:
                    ri_out = self.ri_aggregation(ri_out)
        logits = self.confidence(new_features).transpose(1, 2) if self.confidence is not None else None
        return {
            "xyz": new_xyz,
            "features": new_features,
            "ri_features": ri_out,
            "cls_logits": logits,
            "sample_idx": sample_idx,
        }


class VoteLayer(nn.Module):
    """IA-SSD's centroid voting: shared Conv1d + BN + ReLU layers, then a Conv1d (with bias) to a 3-D offset.

    The vote is the input point plus its offset clipped per axis to ``[-max_translate, max_translate]``; the
    unclipped offset is returned as well (the vote loss supervises it).
    """

    def __init__(
        self, in_channels: int, mlp: Sequence[int] = (128,), max_translate: Sequence[float] | None = (3.0, 3.0, 2.0)
    ) -> None:
        super().__init__()
        if max_translate is not None and (len(max_translate) != 3 or any(t < 0 for t in max_translate)):
            raise ValueError(f"`max_translate` must be three non-negative numbers or None, got {max_translate}")
        self.mlp = _mlp1d([in_channels, *mlp])
        self.offset = nn.Conv1d(mlp[-1] if mlp else in_channels, 3, kernel_size=1)
        limit = torch.tensor(max_translate if max_translate is not None else [float("inf")] * 3)
        self.register_buffer("max_translate", limit, persistent=False)

    def forward(self, xyz: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """``xyz`` (B, n, 3), ``features`` (B, C, n) -> (votes (B, n, 3), raw offsets (B, n, 3))."""
        offsets = self.offset(self.mlp(features)).transpose(1, 2)
        limit = self.max_translate.to(offsets.dtype)
        return xyz + torch.maximum(torch.minimum(offsets, limit), -limit), offsets
