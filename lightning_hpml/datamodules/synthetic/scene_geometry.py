"""Geometry of the synthetic stereo scenes: the rectified rig, textured patches and the scene holding them.

Rig (:class:`StereoRig`): pinhole cameras with focal length ``f`` (pixels) and principal point at the image centre
``((W - 1) / 2, (H - 1) / 2)`` (pixel centres at integer coordinates, rows top to bottom, ``y`` pointing down, ``z``
forward). The left camera sits at ``x = 0``, the right one at ``x = B``. A point at depth ``Z`` appears in the right
view ``f * B / Z`` pixels to the left of where it appears in the left view.

Scene (:class:`StereoScene`): parallelogram patches (:class:`Patch`), each with its own texture addressed by the
patch's 2-D coordinates ``(s, t)`` in ``[0, 1]^2``, so that a surface point has the same colour in both views.
Everything is plain data; :mod:`.stereo_scene` renders it and :mod:`.random_scene` builds random instances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Patch", "StereoRig", "StereoScene"]


@dataclass(frozen=True)
class StereoRig:
    """A rectified pinhole stereo pair (see the module docstring for the conventions)."""

    height: int
    """Image height in pixels."""
    width: int
    """Image width in pixels."""
    focal: float
    """Focal length in pixels (same for both axes and both cameras)."""
    baseline: float = 1.0
    """Distance between the camera centres (scene units); the right camera sits at ``x = baseline``."""

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"StereoRig `{name}` must be an integer >= 2, got {value!r}")
        for name in ("focal", "baseline"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"StereoRig `{name}` must be a positive finite number, got {value!r}")

    @property
    def cx(self) -> float:
        """Principal point column (image centre)."""
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        """Principal point row (image centre)."""
        return (self.height - 1) / 2.0

    def depth(self, disparity: float | np.ndarray) -> float | np.ndarray:
        """Depth ``Z = f * B / d`` of a disparity ``d``."""
        return self.focal * self.baseline / disparity

    def disparity(self, depth: float | np.ndarray) -> float | np.ndarray:
        """Disparity ``d = f * B / Z`` of a depth ``Z``."""
        return self.focal * self.baseline / depth


@dataclass(frozen=True)
class Patch:
    """A textured parallelogram ``origin + s * edge_u + t * edge_v`` for ``s, t`` in ``[0, 1]``.

    ``outward`` makes the patch one-sided (a face of a closed solid): it is skipped for a camera on its inner side,
    which changes nothing in the image (the solid's other faces hide it) but saves work.
    """

    origin: np.ndarray
    """Corner at ``s = t = 0``, shape ``(3,)``."""
    edge_u: np.ndarray
    """Edge along ``s``; texture columns run along it."""
    edge_v: np.ndarray
    """Edge along ``t``; texture rows run along it."""
    texture: int
    """Index into :attr:`StereoScene.textures`."""
    object_id: int = 0
    """0 for the background, ``k >= 1`` for the k-th foreground object."""
    outward: np.ndarray | None = None
    """Outward normal of a one-sided face, or ``None`` for a two-sided surface."""

    def corners(self) -> np.ndarray:
        """The four corners, shape ``(4, 3)``."""
        o, u, v = self.origin, self.edge_u, self.edge_v
        return np.stack([o, o + u, o + u + v, o + v])

    def translated(self, offset: np.ndarray) -> Patch:
        """The same patch moved by ``offset``."""
        return replace(self, origin=self.origin + np.asarray(offset, dtype=np.float64))


@dataclass
class StereoScene:
    """Patches plus the textures they reference."""

    patches: list[Patch]
    """All surfaces; index 0 is conventionally the background."""
    textures: list[np.ndarray] = field(repr=False)
    """float32 ``(h, w, 3)`` textures in ``[0, 1]``."""

    def __post_init__(self) -> None:
        if not self.patches:
            raise ValueError("StereoScene needs at least one patch, got none")
        for k, patch in enumerate(self.patches):
            if not 0 <= patch.texture < len(self.textures):
                raise ValueError(
                    f"StereoScene patch {k} references texture {patch.texture}, but there are "
                    f"{len(self.textures)} textures"
                )

    @property
    def num_objects(self) -> int:
        """Number of foreground objects (largest ``object_id``)."""
        return max(p.object_id for p in self.patches)

    def with_objects_moved(self, offsets: dict[int, np.ndarray]) -> StereoScene:
        """A copy with object ``k``'s patches translated by ``offsets[k]`` (same textures, e.g. a next frame)."""
        patches = [p.translated(offsets[p.object_id]) if p.object_id in offsets else p for p in self.patches]
        return StereoScene(patches=patches, textures=self.textures)
