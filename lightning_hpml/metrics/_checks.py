"""Input checks shared by the stereo disparity metrics (EPE, bad-pixel rate, D1).

The checks live in one place so that every metric accepts exactly the same inputs and fails with the same,
readable messages: a shape mismatch prints both shapes, a non-boolean mask prints its dtype, a bad threshold
prints the value that was passed.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

__all__: list[str] = []


def _type_name(x: object) -> str:
    """``numpy.ndarray`` rather than ``ndarray``, so the message says where the object came from."""
    cls = type(x)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _describe_shapes_allowed() -> str:
    return "(H, W), (B, H, W) or (B, 1, H, W)"


def _check_disparity_shape(name: str, x: Tensor) -> None:
    """Refuse layouts other than (H, W), (B, H, W) and (B, 1, H, W).

    Why: the metrics are per pixel and would run on any shape, but a ``(B, 2, H, W)`` tensor or a flattened map is
    almost always a mistake upstream (wrong output picked, channels mixed up), so it is caught here.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {_type_name(x)}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"`{name}` must be a real-valued disparity tensor, got dtype {x.dtype}")
    if not (x.ndim in (2, 3) or (x.ndim == 4 and x.shape[1] == 1)):
        raise ValueError(f"`{name}` must have shape {_describe_shapes_allowed()}, got {tuple(x.shape)}")


def _resolve_valid(pred: Tensor, target: Tensor, valid: Tensor | None) -> Tensor:
    """Check ``pred``/``target``/``valid`` and return the boolean mask of pixels that count.

    Args:
        pred: Predicted disparity.
        target: Ground-truth disparity, same shape as ``pred``.
        valid: Boolean mask, same shape, or ``None`` for "every pixel whose target is finite" (Middlebury and ETH3D
            mark missing ground truth with ``inf``; KITTI's 0 = invalid must come through an explicit mask).

    Returns:
        The boolean mask.

    Raises:
        TypeError: If an input is not a tensor, or ``valid`` is not boolean.
        ValueError: If the shapes differ or are not one of the accepted layouts.
    """
    _check_disparity_shape("pred", pred)
    _check_disparity_shape("target", target)
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape, got pred {tuple(pred.shape)} and target "
            f"{tuple(target.shape)}"
        )
    if valid is None:
        return torch.isfinite(target)
    if not isinstance(valid, Tensor):
        raise TypeError(f"`valid` must be a torch.Tensor of dtype torch.bool or None, got {_type_name(valid)}")
    if valid.dtype != torch.bool:
        raise TypeError(
            f"`valid` must have dtype torch.bool, got {valid.dtype}; convert a 0/1 mask with `mask > 0` or "
            "`mask.bool()`"
        )
    if valid.shape != target.shape:
        raise ValueError(
            f"`valid` must have the same shape as `target`, got valid {tuple(valid.shape)} and target "
            f"{tuple(target.shape)}"
        )
    return valid


def _abs_error(pred: Tensor, target: Tensor) -> Tensor:
    """Return ``|pred - target|`` in a floating dtype of at least float32 precision.

    Why: half-precision predictions (AMP) would otherwise lose sub-pixel accuracy in the subtraction, and integer
    disparities would be subtracted in integer arithmetic.
    """
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    return (pred.to(dtype) - target.to(dtype)).abs()


def _check_positive_threshold(name: str, value: float) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0.

    Raises:
        TypeError: If ``value`` is not a real number (``bool`` is refused too).
        ValueError: If ``value`` is not finite or not > 0.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} of type {_type_name(value)}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return value


def _rate_compute(bad: Tensor, total: Tensor) -> Tensor:
    """Return ``bad / total`` as a default-dtype scalar, NaN when ``total`` is 0 (no valid pixel was seen)."""
    dtype = torch.get_default_dtype()
    rate = bad.to(torch.float64) / total.to(torch.float64)
    return torch.where(total > 0, rate, torch.full_like(rate, math.nan)).to(dtype)
