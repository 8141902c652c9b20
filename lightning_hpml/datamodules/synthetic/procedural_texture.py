"""Procedural colour textures with strong local contrast, for the surfaces of the synthetic stereo scenes.

A stereo network learns to match small patches between the two views, so flat colours teach it nothing and smooth
noise alone gives weak, ambiguous matches. Each texture therefore mixes

- multi-octave value noise (cells of 1 to 64 texels) mapped through a random two-colour palette, so there is
  contrast at every scale, from single texels up to the size of the surface;
- coarse colour noise, so neighbouring surfaces differ in hue and not only in brightness;
- one or two hard-edged patterns (stripes, a checkerboard, discs, rectangles) that keep strong edges even where
  the renderer magnifies the texture.

Textures are plain float32 ``(h, w, 3)`` arrays in ``[0, 1]``, generated from a ``numpy.random.Generator`` so that a
scene is reproducible from its seed. Everything is vectorised (NumPy and OpenCV); only the drawing of individual
shapes loops, over at most a few hundred shapes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["make_texture"]

_NOISE_CELLS = (1, 2, 4, 8, 16, 32, 64)
"""Cell sizes (texels) of the value-noise octaves."""
_NOISE_WEIGHTS = (0.55, 0.6, 0.6, 0.65, 0.7, 0.7, 0.6)
"""Amplitude of each octave; the fine octaves are kept strong on purpose (local contrast for matching)."""
_MAX_SHAPES = 400
"""Upper bound on discs or rectangles drawn into one texture."""


def make_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Generate one random texture.

    Args:
        rng: Source of randomness; the texture is a deterministic function of its state.
        height: Texture height in texels (at least 1).
        width: Texture width in texels (at least 1).

    Returns:
        float32 array ``(height, width, 3)`` with values in ``[0, 1]``.

    Raises:
        ValueError: ``height`` or ``width`` is not a positive integer.
    """
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` of a texture must be a positive integer, got {value!r}")
    h, w = int(height), int(width)
    luminance = _normalise(_octave_noise(rng, h, w, 1)[..., 0])
    # Contrast curve: push values away from the middle so that fine octaves read as crisp speckle.
    luminance = np.clip(0.5 + (luminance - 0.5) * rng.uniform(1.1, 1.6), 0.0, 1.0)
    dark, light = _palette(rng)
    texture = dark + luminance[..., None] * (light - dark)
    chroma = _octave_noise(rng, h, w, 3, cells=(16, 32, 64), weights=(0.5, 0.7, 0.8))
    texture += 0.12 * chroma / (np.abs(chroma).max() + 1e-6)
    for _ in range(int(rng.integers(1, 3))):
        texture = _overlay_pattern(rng, texture)
    return np.clip(texture, 0.0, 1.0).astype(np.float32, copy=False)


def _octave_noise(
    rng: np.random.Generator,
    h: int,
    w: int,
    channels: int,
    cells: tuple[int, ...] = _NOISE_CELLS,
    weights: tuple[float, ...] = _NOISE_WEIGHTS,
) -> np.ndarray:
    """Sum of value-noise octaves: random values on a grid of ``cell``-texel cells, interpolated bicubically."""
    out = np.zeros((h, w, channels), np.float32)
    for cell, weight in zip(cells, weights):
        if cell == 1:
            layer = rng.standard_normal((h, w, channels), dtype=np.float32)
        else:
            gh, gw = max(2, math.ceil(h / cell) + 1), max(2, math.ceil(w / cell) + 1)
            grid = rng.standard_normal((gh, gw, channels), dtype=np.float32)
            layer = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
        out += np.float32(weight) * layer
    return out


def _normalise(values: np.ndarray) -> np.ndarray:
    """Map the 2nd..98th percentile range to ``[0, 1]`` (clipped), so every texture uses the full range."""
    lo, hi = np.percentile(values, (2.0, 98.0))
    return np.clip((values - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def _palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark and a light random colour, far enough apart in brightness to give contrast."""
    dark = rng.uniform(0.0, 0.35, size=3).astype(np.float32)
    light = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    if rng.random() < 0.5:  # some textures get a saturated hue instead of near-greys
        light[rng.integers(0, 3)] *= rng.uniform(0.2, 0.6)
    return dark, light


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _overlay_pattern(rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    """Blend one random hard-edged pattern into ``texture``."""
    h, w = texture.shape[:2]
    kind = rng.choice(("stripes", "checker", "discs", "rectangles"))
    alpha = np.float32(rng.uniform(0.35, 0.8))
    if kind in ("stripes", "checker"):
        period = rng.uniform(4.0, 24.0)
        angle = rng.uniform(0.0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = (xx * math.cos(angle) + yy * math.sin(angle)) / period + rng.uniform(0, 1)
        if kind == "stripes":
            mask = (np.floor(a) % 2).astype(np.float32)
        else:
            b = (-xx * math.sin(angle) + yy * math.cos(angle)) / period + rng.uniform(0, 1)
            mask = ((np.floor(a) + np.floor(b)) % 2).astype(np.float32)
        colour = _random_colour(rng)
        weight = alpha * mask[..., None]
        return texture * (1 - weight) + colour * weight
    layer = texture.copy()
    mean_size = rng.uniform(2.0, 10.0)
    count = int(min(_MAX_SHAPES, max(3, h * w / (mean_size * mean_size * 12.0))))
    centres = rng.uniform((0, 0), (w, h), size=(count, 2))
    sizes = mean_size * rng.uniform(0.4, 1.8, size=(count, 2))
    colours = rng.uniform(0.0, 1.0, size=(count, 3))
    for (x, y), (sx, sy), colour in zip(centres, sizes, colours):
        c = tuple(float(v) for v in colour)
        if kind == "discs":
            cv2.circle(layer, (int(x), int(y)), max(1, int(sx)), c, thickness=-1, lineType=cv2.LINE_AA)
        else:
            p0 = (int(x - sx), int(y - sy))
            p1 = (int(x + sx), int(y + sy))
            cv2.rectangle(layer, p0, p1, c, thickness=-1, lineType=cv2.LINE_AA)
    return texture * (1 - alpha) + layer * alpha
