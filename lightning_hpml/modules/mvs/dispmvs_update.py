"""DispMVS's recurrent update block: motion encoder, separable ConvGRU, flow/confidence and upsampling-mask heads.

Follows ``BasicUpdateBlock`` of the official code (Yannnnnnnnnnnn/DispMVS_release, ``update.py``), which adapts RAFT's
update block to a 1-channel flow: the cost (``levels * (2r + 1)`` channels) goes through 1x1 (256) and 3x3 (192)
convolutions, the flow through 7x7 (128) and 3x3 (64); a 3x3 convolution merges them to 127 channels and the raw
flow is appended (128). A SepConvGRU (1x5 then 5x1 gates) takes the context plus these motion features. The flow head
(3x3 256, ReLU, 3x3) outputs a flow increment and a confidence logit; the mask head (3x3 256, ReLU, 1x1) outputs
``9 * 4 * 4`` convex-upsampling logits, scaled by 0.25. ``width`` scales the hidden channel counts (1.0 = official).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.mvs.dispmvs_encoder import scaled

__all__ = ["SepConvGRU", "UpdateBlock"]

UPSAMPLE_FACTOR = 4


class SepConvGRU(nn.Module):
    """A ConvGRU applied twice: with 1x5 kernels (horizontal) and then 5x1 kernels (vertical)."""

    def __init__(self, hidden: int, inputs: int) -> None:
        super().__init__()

        def gates(kernel: tuple[int, int]) -> nn.ModuleList:
            padding = (kernel[0] // 2, kernel[1] // 2)
            return nn.ModuleList(nn.Conv2d(hidden + inputs, hidden, kernel, padding=padding) for _ in range(3))

        self.horizontal = gates((1, 5))
        self.vertical = gates((5, 1))

    @staticmethod
    def _step(convs: nn.ModuleList, h: Tensor, x: Tensor) -> Tensor:
        hx = torch.cat([h, x], 1)
        z, r = torch.sigmoid(convs[0](hx)), torch.sigmoid(convs[1](hx))
        q = torch.tanh(convs[2](torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        return self._step(self.vertical, self._step(self.horizontal, h, x), x)


class UpdateBlock(nn.Module):
    """One GRU iteration: ``(hidden, context, cost, flow) -> (hidden, delta_flow, confidence_logit, mask_logits)``.

    Args:
        hidden: GRU hidden channels (= context channels): 128 at 1/16, 96 at 1/4 in the official model.
        cost_channels: ``levels * (2 * radius + 1)``.
        width: Multiplier of the motion-encoder and head channels.
    """

    def __init__(self, hidden: int, cost_channels: int, width: float = 1.0) -> None:
        super().__init__()
        c256, c192, c128, c64 = (scaled(c, width) for c in (256, 192, 128, 64))
        self.cost1, self.cost2 = nn.Conv2d(cost_channels, c256, 1), nn.Conv2d(c256, c192, 3, padding=1)
        self.flow1, self.flow2 = nn.Conv2d(1, c128, 7, padding=3), nn.Conv2d(c128, c64, 3, padding=1)
        self.motion = nn.Conv2d(c192 + c64, c128 - 1, 3, padding=1)
        self.gru = SepConvGRU(hidden, hidden + c128)
        self.flow_head = nn.Sequential(
            nn.Conv2d(hidden, c256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c256, 2, 3, padding=1)
        )
        self.mask_head = nn.Sequential(
            nn.Conv2d(hidden, c256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c256, 9 * UPSAMPLE_FACTOR**2, 1),
        )

    def forward(self, hidden: Tensor, context: Tensor, cost: Tensor, flow: Tensor) -> tuple[Tensor, ...]:
        cost = F.relu(self.cost2(F.relu(self.cost1(cost))))
        motion = F.relu(self.flow2(F.relu(self.flow1(flow))))
        motion = torch.cat([F.relu(self.motion(torch.cat([cost, motion], 1))), flow], 1)
        hidden = self.gru(hidden, torch.cat([context, motion], 1))
        delta_and_confidence = self.flow_head(hidden)
        mask_logits = 0.25 * self.mask_head(hidden)
        return hidden, delta_and_confidence[:, :1], delta_and_confidence[:, 1:], mask_logits
