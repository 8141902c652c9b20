"""Readers and writers for the on-disk formats of the stereo datasets (PFM, KITTI and Sintel PNG, EXR, RGB views).

Conventions shared by every function: images are uint8 ``(H, W, 3)`` RGB, disparity is float32 ``(H, W)`` in
pixels with rows top-to-bottom, validity is a bool ``(H, W)`` mask. A missing file raises ``FileNotFoundError``; a
file that exists but does not match its format raises a :class:`FormatError` subclass whose message starts with the
path; a bad array passed to a writer raises ``ValueError``/``TypeError`` naming the argument. Writers create parent
folders, so the synthetic-dataset generators can write a fresh tree with them.
"""

from __future__ import annotations

from lightning_hpml.datamodules.formats.disparity import DISPARITY_SUFFIXES, read_disparity, write_disparity
from lightning_hpml.datamodules.formats.errors import (
    EXRFormatError,
    FormatError,
    ImageFormatError,
    KittiDisparityFormatError,
    PFMFormatError,
    SintelDisparityFormatError,
)
from lightning_hpml.datamodules.formats.exr import opencv_has_exr, read_exr, read_exr_channels, write_exr
from lightning_hpml.datamodules.formats.image import read_rgb, write_rgb
from lightning_hpml.datamodules.formats.kitti_png import (
    KITTI_DISPARITY_SCALE,
    KITTI_MAX_DISPARITY,
    encode_kitti_disparity,
    read_kitti_disparity,
    write_kitti_disparity,
)
from lightning_hpml.datamodules.formats.pfm import read_pfm, write_pfm
from lightning_hpml.datamodules.formats.sintel_png import (
    SINTEL_DISPARITY_STEP,
    SINTEL_MAX_DISPARITY,
    read_sintel_disparity,
    write_sintel_disparity,
)

__all__ = [
    "DISPARITY_SUFFIXES",
    "KITTI_DISPARITY_SCALE",
    "KITTI_MAX_DISPARITY",
    "SINTEL_DISPARITY_STEP",
    "SINTEL_MAX_DISPARITY",
    "EXRFormatError",
    "FormatError",
    "ImageFormatError",
    "KittiDisparityFormatError",
    "PFMFormatError",
    "SintelDisparityFormatError",
    "encode_kitti_disparity",
    "opencv_has_exr",
    "read_disparity",
    "read_exr",
    "read_exr_channels",
    "read_kitti_disparity",
    "read_pfm",
    "read_rgb",
    "read_sintel_disparity",
    "write_disparity",
    "write_exr",
    "write_kitti_disparity",
    "write_pfm",
    "write_rgb",
    "write_sintel_disparity",
]
