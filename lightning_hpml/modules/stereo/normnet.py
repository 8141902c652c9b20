"""NormNetS and the disparity-to-normal transform ``disp2norm`` of DispNormNet / DTN-Net.

Paper: Wang, Zheng, Yan, Chu, Shi, "IRS: A Large Naturalistic Indoor Robotics Stereo Dataset to Train Deep Models
for Disparity and Surface Normal Estimation", arXiv:1912.09678 (ICME 2021 version: DTN-Net). Official code:
https://github.com/HKBU-HPML/IRS (``networks/NormNetS.py``, ``networks/submodules.py::disp2norm``); reimplemented
from the facts in ``shared/reference/stereo-models-and-datasets.md`` section 4.2, no code copied.

NormNetS is a DispNet-style U-Net without intermediate predictions: encoder conv 7x7/2 then ResBlocks (64, 128, 256,
256, 512, 512, 512, 512, 1024, 1024 channels, as DispNetRes), decoder of six (4x4/2 transposed conv + LeakyReLU,
concat skip, 3x3 stride-1 transposed conv) levels, the last skip being the left image, then a 3x3 convolution to
3 channels divided by its L2 norm (+1e-8).

Deliberate differences from the official code:

- ``width`` scales every channel count (not an official option) for small CPU test models.
- ``disp2norm`` takes the principal point as arguments (default the official ``(W/2, H/2)``), and after the official
  formula flips every normal that points away from the camera (``n . r > 0`` for the pixel's viewing ray), the
  package's IRS normal convention (see :mod:`lightning_hpml.datamodules.stereo.irs`); where the GeoNet estimate
  already faces the camera (almost everywhere) nothing changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_hpml.modules.layers import ConvLReLU, ResBlock, UpConvLReLU, iconv
from lightning_hpml.modules.stereo.dispnet import (
    DECODER_CHANNELS,
    ENCODER_CHANNELS,
    _encoder_tail,
    _run_tail,
    init_dispnet_weights,
    scaled_channels,
)

__all__ = ["NormNetS", "disp2norm"]


def disp2norm(disparity: Tensor, fx: float, fy: float, cx: float | None = None, cy: float | None = None) -> Tensor:
    r"""Surface normals from a disparity map (GeoNet-style, as the official ``disp2norm``).

    With central differences :math:`d_x = (d_{x-1} - d_{x+1})/2`, :math:`d_y = (d_{y-1} - d_{y+1})/2` and centred
    coordinates :math:`x_c = c_x - x`, :math:`y_c = c_y - y`:

    .. math::
        n = \mathrm{normalise}\Big(\frac{f_x d_x}{\max(|d - x_c d_x|, 10^{-8})},
        \frac{f_y d_y}{\max(|d - y_c d_y|, 10^{-8})}, -1\Big)

    in the camera frame (``x`` right, ``y`` down, ``z`` forward); border columns/rows replicate their neighbours.
    Then entries ``<= 0`` get ``+1e-6`` (official) and normals pointing away from the camera are negated (this
    package's convention). For a plane :math:`d = \alpha (x - c_x) + \beta (y - c_y) + \gamma` the exact normal is
    :math:`\propto -(f\alpha, f\beta, \gamma)`; the formula gives it exactly where :math:`\beta (y - c_y) = 0` and
    :math:`\alpha (x - c_x) = 0` hold for the ``x`` and ``y`` components respectively (e.g. at the principal point,
    or everywhere for a plane whose disparity varies along one image axis only), and approximately elsewhere.

    Args:
        disparity: ``(B, 1, H, W)`` disparity in pixels (DTN-Net feeds ``d + 0.01``), ``H, W >= 3``.
        fx: Horizontal focal length in pixels (IRS: 480).
        fy: Vertical focal length in pixels.
        cx: Principal point column; default ``W / 2`` (official).
        cy: Principal point row; default ``H / 2`` (official).

    Returns:
        ``(B, 3, H, W)`` unit normals.

    Raises:
        ValueError: ``disparity`` is not ``(B, 1, H, W)`` with ``H, W >= 3``, or a focal length is not positive.
    """
    if disparity.ndim != 4 or disparity.shape[1] != 1 or min(disparity.shape[-2:]) < 3:
        raise ValueError(f"`disparity` must be (B, 1, H, W) with H, W >= 3, got {tuple(disparity.shape)}")
    if not (fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be positive, got fx={fx!r}, fy={fy!r}")
    b, _, h, w = disparity.shape
    cx = w / 2.0 if cx is None else float(cx)
    cy = h / 2.0 if cy is None else float(cy)
    xs = torch.arange(w, device=disparity.device, dtype=disparity.dtype).view(1, 1, 1, w)
    ys = torch.arange(h, device=disparity.device, dtype=disparity.dtype).view(1, 1, h, 1)
    dx = (disparity[..., :-2] - disparity[..., 2:]) * 0.5
    dy = (disparity[..., :-2, :] - disparity[..., 2:, :]) * 0.5
    nx = fx * dx / (disparity[..., 1:-1] - (cx - xs[..., 1:-1]) * dx).abs().clamp(1e-8, 1e16)
    ny = fy * dy / (disparity[..., 1:-1, :] - (cy - ys[..., 1:-1, :]) * dy).abs().clamp(1e-8, 1e16)
    nx = F.pad(nx, (1, 1, 0, 0), mode="replicate")
    ny = F.pad(ny, (0, 0, 1, 1), mode="replicate")
    normal = torch.cat((nx, ny, -torch.ones_like(nx)), dim=1)
    normal = normal / torch.linalg.vector_norm(normal, dim=1, keepdim=True)
    normal = torch.where(normal <= 0, normal + 1e-6, normal)
    # Package convention: normals face the camera (n . r <= 0 with r = ((x - cx) / fx, (y - cy) / fy, 1)).
    facing = normal[:, 0:1] * ((xs - cx) / fx) + normal[:, 1:2] * ((ys - cy) / fy) + normal[:, 2:3]
    return torch.where(facing > 0, -normal, normal).expand(b, 3, h, w)


class NormNetS(nn.Module):
    """Surface-normal U-Net of the IRS paper.

    Args:
        in_channels: Input channels; the first three must be the left image (they are the last decoder skip).
            DispNormNet: 7 (left, right, disparity); DTN-Net: 10 (left, right, initial normal, disparity).
        width: Channel multiplier (1.0 = the paper's model).

    Forward: ``(B, in_channels, H, W)`` with ``H, W`` divisible by 64 -> ``(B, 3, H, W)`` unit normals.
    """

    def __init__(self, in_channels: int = 7, width: float = 1.0) -> None:
        super().__init__()
        if in_channels < 3:
            raise ValueError(f"`in_channels` must be >= 3 (the left image comes first), got {in_channels!r}")
        if width <= 0:
            raise ValueError(f"`width` must be positive, got {width!r}")
        c1, c2, c3, c4, c5, c6 = scaled_channels(ENCODER_CHANNELS, width)
        self.conv1 = ConvLReLU(in_channels, c1, kernel_size=7, stride=2)
        self.conv2 = ResBlock(c1, c2, stride=2)
        self.conv3 = ResBlock(c2, c3, stride=2)
        self.conv3_1 = ResBlock(c3, c3)
        self.tail = _encoder_tail(c3, c4, c5, c6)
        self.upconvs = nn.ModuleList()
        self.iconvs = nn.ModuleList()
        previous = c6
        for out_channels, skip in zip(scaled_channels(DECODER_CHANNELS, width), (c5, c4, c3, c2, c1, 3)):
            self.upconvs.append(UpConvLReLU(previous, out_channels))
            self.iconvs.append(iconv(out_channels + skip, out_channels))
            previous = out_channels
        self.predict = nn.Conv2d(previous, 3, 3, 1, padding=1, bias=False)
        init_dispnet_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        f1 = self.conv1(x)
        f2 = self.conv2(f1)
        c3 = self.conv3_1(self.conv3(f2))
        c4, c5, c6 = _run_tail(self.tail, c3)
        features = c6
        for upconv, fuse, skip in zip(self.upconvs, self.iconvs, (c5, c4, c3, f2, f1, x[:, :3])):
            features = fuse(torch.cat((upconv(features), skip), dim=1))
        pred = self.predict(features)
        return pred / (torch.linalg.vector_norm(pred, dim=1, keepdim=True) + 1e-8)
