"""Disparity and disparity-error images, and a left / prediction / ground truth / error panel.

All functions take NumPy arrays or torch tensors (any device, detached here) and return ``uint8`` ``H x W x 3`` RGB
arrays, ready for :func:`lightning_hpml.viz.save_png`, TensorBoard (``dataformats="HWC"``) or a notebook.
Pixels without a value (NaN/inf, or ``valid == False``) are drawn black so that missing ground truth is never
mistaken for a small or large disparity.

Error colours follow the KITTI stereo devkit's idea of log-scale bins (edges 0, 0.1875, 0.375, 0.75, 1.5, 3, 6, 12,
24, 48 px and beyond), each bin twice the previous one, so that the 3 px outlier threshold sits on a bin edge: cool
blues below 3 px, warm yellow to dark red above, red from 24 px. The colour table is this package's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["ERROR_BIN_COLORS", "ERROR_BIN_EDGES", "colorize_disparity", "colorize_error", "stereo_panel"]

ERROR_BIN_EDGES: tuple[float, ...] = (0.0, 0.1875, 0.375, 0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 48.0, float("inf"))
"""Absolute disparity-error bin edges in pixels (KITTI devkit log-scale bins); bin ``k`` is ``[edge_k, edge_k+1)``."""

ERROR_BIN_COLORS: np.ndarray = np.array(
    [
        [20, 30, 110],  # [0, 0.1875) px: dark blue
        [30, 70, 180],
        [50, 120, 220],
        [100, 170, 235],
        [170, 215, 240],  # [1.5, 3) px: pale blue, still within the 3 px threshold
        [250, 230, 140],  # [3, 6) px: pale yellow, first bin of outliers
        [250, 175, 70],
        [235, 110, 40],
        [210, 35, 30],  # [24, 48) px: red
        [130, 0, 20],  # >= 48 px: dark red
    ],
    dtype=np.uint8,
)
"""RGB colour per error bin (10 bins, blue for small error to red for large); invalid pixels are black."""

_LUT_SIZE = 256


def _to_numpy(name: str, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return ``x`` as a NumPy array (tensors detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"`{name}` must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")


def _as_map(name: str, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return a float64 ``H x W`` map from ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` input."""
    arr = _to_numpy(name, x)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"`{name}` must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim < 2 or any(n != 1 for n in arr.shape[:-2]):
        raise ValueError(f"`{name}` must have shape (H, W), (1, H, W) or (1, 1, H, W), got {arr.shape}")
    return arr.reshape(arr.shape[-2:]).astype(np.float64)


def _as_mask(name: str, valid: np.ndarray | torch.Tensor | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Return ``valid`` as a bool ``H x W`` array matching ``shape``, or ``None``."""
    if valid is None:
        return None
    arr = _to_numpy(name, valid)
    if arr.dtype != np.bool_:
        raise TypeError(f"`{name}` must be a boolean mask, got dtype {arr.dtype}; convert with `mask > 0`")
    if arr.ndim < 2 or any(n != 1 for n in arr.shape[:-2]) or arr.shape[-2:] != shape:
        raise ValueError(f"`{name}` must be a mask of shape {shape} (optionally with leading 1s), got {arr.shape}")
    return arr.reshape(shape)


def _colormap_lut(cmap: str) -> np.ndarray:
    """Return a ``256 x 3`` uint8 lookup table sampled from a Matplotlib colormap."""
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(
            f"`cmap` {cmap!r} is not a Matplotlib colormap; e.g. 'turbo', 'magma', 'viridis', 'plasma'"
        ) from None
    rgba = colormap(np.linspace(0.0, 1.0, _LUT_SIZE))
    return np.round(rgba[:, :3] * 255.0).astype(np.uint8)


def _auto_max(disp: np.ndarray, mask: np.ndarray) -> float:
    """Largest valid disparity, or 1.0 when there is none (or it is not positive), as the colour-scale top."""
    values = disp[mask]
    top = float(values.max()) if values.size else 0.0
    return top if top > 0 else 1.0


def colorize_disparity(
    disp: np.ndarray | torch.Tensor,
    max_disp: float | None = None,
    cmap: str = "turbo",
    valid: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Map a disparity map to colours, 0 at the bottom of ``cmap`` and ``max_disp`` at the top.

    Why a fixed 0..``max_disp`` scale (not min..max of the map): two maps drawn with the same ``max_disp`` (e.g. a
    prediction and its ground truth) then use the same colour for the same disparity.

    Args:
        disp: Disparity in pixels, shape ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``.
        max_disp: Disparity drawn with the top colour; larger values are clipped to it (negative ones to 0).
            ``None`` uses the largest valid value of ``disp``.
        cmap: Name of a Matplotlib colormap.
        valid: Optional boolean mask; pixels where it is False are black.

    Returns:
        ``uint8`` array ``H x W x 3``; NaN/inf and invalid pixels are ``(0, 0, 0)``.

    Raises:
        TypeError: If ``disp`` is not an array/tensor of numbers or ``valid`` is not boolean.
        ValueError: If a shape is wrong, ``max_disp <= 0`` or ``cmap`` is unknown.

    Example:
        >>> import numpy as np
        >>> image = colorize_disparity(np.array([[0.0, 96.0], [192.0, np.nan]], dtype=np.float32), max_disp=192)
        >>> image.shape, image.dtype, image[1, 1].tolist()
        ((2, 2, 3), dtype('uint8'), [0, 0, 0])
    """
    d = _as_map("disp", disp)
    mask = np.isfinite(d)
    user_mask = _as_mask("valid", valid, d.shape)
    if user_mask is not None:
        mask &= user_mask
    if max_disp is None:
        top = _auto_max(d, mask)
    else:
        top = float(max_disp)
        if not np.isfinite(top) or top <= 0:
            raise ValueError(f"`max_disp` must be a finite number > 0 or None, got {max_disp!r}")
    lut = _colormap_lut(cmap)
    scaled = np.clip(np.where(mask, d, 0.0) / top, 0.0, 1.0)
    index = np.round(scaled * (_LUT_SIZE - 1)).astype(np.intp)
    image = lut[index]
    image[~mask] = 0
    return image


def colorize_error(
    err: np.ndarray | torch.Tensor,
    valid: np.ndarray | torch.Tensor | None = None,
    bin_edges: Sequence[float] = ERROR_BIN_EDGES,
    colors: np.ndarray = ERROR_BIN_COLORS,
) -> np.ndarray:
    """Colour a disparity-error map with KITTI-style log-scale bins: blue below 3 px, yellow to red above.

    Args:
        err: Disparity error in pixels (signed or absolute; its absolute value is used), shape ``(H, W)``,
            ``(1, H, W)`` or ``(1, 1, H, W)``.
        valid: Optional boolean mask of pixels that have ground truth; others are black. NaN/inf errors are black
            too (they have no bin).
        bin_edges: Increasing bin edges in pixels starting at 0; the last may be ``inf``.
        colors: ``len(bin_edges) - 1`` RGB rows (uint8), one per bin.

    Returns:
        ``uint8`` array ``H x W x 3``.

    Raises:
        TypeError: If an input has the wrong type or dtype.
        ValueError: If a shape is wrong, or ``bin_edges`` and ``colors`` do not fit together.

    Example:
        >>> import numpy as np
        >>> image = colorize_error(np.array([[0.1, 100.0]]), valid=np.array([[True, True]]))
        >>> image[0, 0].tolist() == ERROR_BIN_COLORS[0].tolist(), image[0, 1].tolist() == ERROR_BIN_COLORS[-1].tolist()
        (True, True)
    """
    e = np.abs(_as_map("err", err))
    edges = np.asarray(bin_edges, dtype=np.float64)
    table = np.asarray(colors)
    if edges.ndim != 1 or edges.size < 2 or edges[0] != 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"`bin_edges` must be increasing, start at 0 and have >= 2 entries, got {tuple(bin_edges)}")
    if table.dtype != np.uint8 or table.shape != (edges.size - 1, 3):
        raise ValueError(
            f"`colors` must be a uint8 array of shape ({edges.size - 1}, 3) for {edges.size} bin edges, got dtype "
            f"{table.dtype} and shape {table.shape}"
        )
    mask = np.isfinite(e)
    user_mask = _as_mask("valid", valid, e.shape)
    if user_mask is not None:
        mask &= user_mask
    # Bin k holds edges[k] <= e < edges[k + 1]; errors beyond a finite last edge go into the last bin.
    index = np.clip(np.searchsorted(edges, np.where(mask, e, 0.0), side="right") - 1, 0, edges.size - 2)
    image = table[index]
    image[~mask] = 0
    return image


def _as_rgb(left: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return the left image as uint8 ``H x W x 3``.

    Accepted: a tensor ``(3, H, W)`` / ``(1, 3, H, W)`` (channels first, as in batches) or a NumPy ``H x W x 3``
    array (channels last, as on disk), or a grey ``H x W`` map; uint8 values as they are, floats in [0, 1].
    """
    is_tensor = isinstance(left, torch.Tensor)
    arr = _to_numpy("left", left)
    if is_tensor and arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if is_tensor and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        layout = "(3, H, W) tensor" if is_tensor else "H x W x 3 array"
        raise ValueError(f"`left` must be an RGB image ({layout}) or an H x W grey map, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"`left` must be uint8 (0..255) or float (0..1), got dtype {arr.dtype}")
    finite = arr[np.isfinite(arr)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if finite.size != arr.size or low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"float `left` must hold finite values in [0, 1], got range [{low:.4g}, {high:.4g}] "
            f"({arr.size - finite.size} non-finite); pass the image before mean/std normalisation"
        )
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def _draw_label(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in white on a black box in the top-left corner (PIL's default bitmap font)."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    _, _, right, bottom = draw.textbbox((2, 1), text, font=font)
    draw.rectangle((0, 0, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


def stereo_panel(
    left: np.ndarray | torch.Tensor,
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor | None = None,
    valid: np.ndarray | torch.Tensor | None = None,
    max_disp: float | None = None,
    cmap: str = "turbo",
    labels: bool = True,
) -> np.ndarray:
    """Stack, top to bottom: the left image, the predicted disparity and, if ``gt`` is given, the ground truth and
    the error map.

    Prediction and ground truth share one colour scale so they can be compared by eye. Every row is ``H`` pixels
    high (labels are drawn over the top-left corner, not added as extra rows), so the panel is ``(2 H or 4 H) x W``.

    Args:
        left: Left image: tensor ``(3, H, W)`` float in [0, 1] (batch layout) or array ``H x W x 3`` uint8 / float.
        pred: Predicted disparity ``(H, W)`` (leading 1-sized dims allowed).
        gt: Ground-truth disparity, same size; ``None`` leaves out the ground-truth and error rows.
        valid: Boolean mask of pixels with ground truth (``None``: every finite ``gt``); black in the gt and error
            rows. Ignored when ``gt`` is None.
        max_disp: Top of the disparity colour scale; ``None`` uses the largest valid ground truth (or prediction
            when there is no ground truth).
        cmap: Matplotlib colormap for disparity.
        labels: Draw "left", "prediction", "ground truth", "error" in each row's corner.

    Returns:
        ``uint8`` array ``(rows * H) x W x 3``.

    Raises:
        ValueError: If the sizes of the inputs differ, or as in :func:`colorize_disparity`.

    Example:
        >>> import torch
        >>> left, disp = torch.rand(3, 8, 12), torch.rand(8, 12) * 20
        >>> stereo_panel(left, disp, disp + 1).shape
        (32, 12, 3)
        >>> stereo_panel(left, disp).shape
        (16, 12, 3)
    """
    rgb = _as_rgb(left)
    size = rgb.shape[:2]
    pred_map = _as_map("pred", pred)
    if pred_map.shape != size:
        raise ValueError(f"`pred` has size {pred_map.shape} but `left` has size {size}; they must match")
    rows: list[tuple[str, np.ndarray]] = [("left", rgb)]
    if gt is None:
        top = max_disp if max_disp is not None else _auto_max(pred_map, np.isfinite(pred_map))
        rows.append(("prediction", colorize_disparity(pred_map, top, cmap)))
    else:
        gt_map = _as_map("gt", gt)
        if gt_map.shape != size:
            raise ValueError(f"`gt` has size {gt_map.shape} but `left` has size {size}; they must match")
        mask = np.isfinite(gt_map)
        user_mask = _as_mask("valid", valid, size)
        if user_mask is not None:
            mask &= user_mask
        top = max_disp if max_disp is not None else _auto_max(gt_map, mask)
        rows.append(("prediction", colorize_disparity(pred_map, top, cmap)))
        rows.append(("ground truth", colorize_disparity(gt_map, top, cmap, valid=mask)))
        rows.append(("error (px, KITTI bins)", colorize_error(pred_map - gt_map, valid=mask)))
    if labels:
        rows = [(name, _draw_label(image, name)) for name, image in rows]
    return np.ascontiguousarray(np.concatenate([image for _, image in rows], axis=0))
