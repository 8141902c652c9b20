"""Icosphere meshes and the maps between an equirectangular panorama and mesh vertices (SphereDepth's domain).

SphereDepth (Yan et al., 3DV 2022) predicts depth on a spherical mesh; its code is not released, so this follows
the common construction its follow-up SphereFusion describes: an icosahedron refined by subdivision to level ``L``
(each triangle split into four at its edge midpoints, new vertices pushed onto the unit sphere), giving
``10 * 4**L + 2`` vertices and ``20 * 4**L`` faces. Vertices of level ``L`` are the first vertices of level ``L + 1``,
so pooling keeps a prefix and unpooling averages the two parents of each new vertex.

Directions use the camera convention of the panorama datasets: ``x`` right, ``y`` down, ``z`` forward; longitude
``atan2(x, z)`` in ``[-pi, pi)`` runs left to right across the image and latitude ``asin(-y)`` from ``+pi/2`` at the
top row to ``-pi/2`` at the bottom (pixel centres at ``(i + 0.5) / H``).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Icosphere",
    "directions_to_equirect",
    "equirect_directions",
    "icosphere",
    "project_to_equirect",
    "sample_equirect",
]


class Icosphere:
    """One subdivision level: ``vertices`` (V, 3), ``faces`` (F, 3), and what links it to coarser levels.

    Attributes:
        parents: (V - V_prev, 2) the two level ``L - 1`` vertices each new vertex is the midpoint of.
        children: (F_prev, 4) the four faces each level ``L - 1`` face was split into.
        neighbours: (V, 7) each vertex followed by its 1-ring ordered counter-clockwise from the direction of the
            north pole (a fixed reference, so a mesh convolution's taps mean the same on every vertex); the 12
            original vertices have 5 neighbours and repeat themselves in the last slot.
    """

    def __init__(self, level: int, vertices: Tensor, faces: Tensor, parents: Tensor, children: Tensor) -> None:
        self.level = level
        self.vertices = vertices
        self.faces = faces
        self.parents = parents
        self.children = children
        self.neighbours = _ordered_rings(vertices, faces)

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]


def _icosahedron() -> tuple[Tensor, Tensor]:
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = torch.tensor(
        [
            [-1, t, 0],
            [1, t, 0],
            [-1, -t, 0],
            [1, -t, 0],
            [0, -1, t],
            [0, 1, t],
            [0, -1, -t],
            [0, 1, -t],
            [t, 0, -1],
            [t, 0, 1],
            [-t, 0, -1],
            [-t, 0, 1],
        ],
        dtype=torch.float64,
    )
    f = torch.tensor(
        [
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ],
        dtype=torch.int64,
    )
    return v / v.norm(dim=1, keepdim=True), f


def _subdivide(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    midpoint: dict[tuple[int, int], int] = {}
    new_vertices: list[Tensor] = []
    parents: list[tuple[int, int]] = []
    n = vertices.shape[0]

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoint:
            p = vertices[a] + vertices[b]
            new_vertices.append(p / p.norm())
            parents.append(key)
            midpoint[key] = n + len(new_vertices) - 1
        return midpoint[key]

    out_faces, children = [], []
    for a, b, c in faces.tolist():
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        children.append(list(range(len(out_faces), len(out_faces) + 4)))
        out_faces += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
    return (
        torch.cat([vertices, torch.stack(new_vertices)]),
        torch.tensor(out_faces, dtype=torch.int64),
        torch.tensor(parents, dtype=torch.int64),
        torch.tensor(children, dtype=torch.int64),
    )


def _ordered_rings(vertices: Tensor, faces: Tensor) -> Tensor:
    """Each vertex and its neighbours sorted by angle in the tangent plane, starting towards the north pole."""
    v = vertices.shape[0]
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.unique(torch.cat([edges, edges.flip(1)]), dim=0)
    order = torch.argsort(edges[:, 0] * v + edges[:, 1])
    edges = edges[order]
    degree = torch.bincount(edges[:, 0], minlength=v)
    if degree.max() > 6 or degree.min() < 5:
        raise RuntimeError(f"icosphere vertex degrees must be 5 or 6, got {degree.min()}..{degree.max()}")
    north = torch.tensor([0.0, -1.0, 0.0], dtype=vertices.dtype)  # y points down
    normal = vertices
    ref = north - (normal @ north)[:, None] * normal
    fallback = torch.tensor([0.0, 0.0, 1.0], dtype=vertices.dtype)
    small = ref.norm(dim=1) < 1e-6  # at the poles: use the forward direction as reference
    ref[small] = fallback - (normal[small] @ fallback)[:, None] * normal[small]
    ref = ref / ref.norm(dim=1, keepdim=True)
    side = torch.cross(normal, ref, dim=1)
    rings = torch.arange(v)[:, None].repeat(1, 7)
    start = torch.cumsum(degree, 0) - degree
    for k in range(6):
        has = degree > k
        idx = edges[(start + k)[has], 1]
        rings[has, 1 + k] = idx
    delta = vertices[rings[:, 1:]] - vertices[:, None, :]
    angle = torch.atan2((delta * side[:, None]).sum(-1), (delta * ref[:, None]).sum(-1))
    angle[degree == 5, 5] = float("inf")  # the padded slot sorts last
    rings[:, 1:] = torch.gather(rings[:, 1:], 1, torch.argsort(angle, dim=1))
    return rings


@cache
def icosphere(level: int) -> tuple[Icosphere, ...]:
    """Levels ``0..level`` (cached: meshes are built once per process)."""
    if not 0 <= level <= 9:
        raise ValueError(f"icosphere level must be in [0, 9], got {level}")
    vertices, faces = _icosahedron()
    empty = torch.zeros(0, 2, dtype=torch.int64)
    levels = [Icosphere(0, vertices, faces, empty, torch.zeros(0, 4, dtype=torch.int64))]
    for lvl in range(1, level + 1):
        vertices, faces, parents, children = _subdivide(vertices, faces)
        levels.append(Icosphere(lvl, vertices, faces, parents, children))
    return tuple(levels)


def equirect_directions(height: int, width: int) -> Tensor:
    """Unit direction of every pixel centre, shape (H, W, 3), float64."""
    lat = math.pi / 2 - (torch.arange(height, dtype=torch.float64) + 0.5) / height * math.pi
    lon = (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 * math.pi - math.pi
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([lat.cos() * lon.sin(), -lat.sin(), lat.cos() * lon.cos()], dim=-1)


def directions_to_equirect(directions: Tensor) -> Tensor:
    """Normalised grid_sample coordinates (x = longitude, y = latitude) in [-1, 1] for unit directions (..., 3)."""
    lon = torch.atan2(directions[..., 0], directions[..., 2])
    lat = torch.asin((-directions[..., 1]).clamp(-1, 1))
    return torch.stack([lon / math.pi, -lat / (math.pi / 2)], dim=-1)


def sample_equirect(image: Tensor, vertices: Tensor, resolution: tuple[int, int] | None = None) -> Tensor:
    """Bilinear samples of an equirectangular ``image`` (B, C, H, W) at unit ``vertices`` (V, 3): (B, C, V).

    ``resolution`` first resamples the panorama (area averaging) to ``(H', W')``: SphereDepth's image sampling
    resolution, the speed/accuracy knob beside the mesh level. Longitude wraps around (circular padding).
    """
    if resolution is not None and tuple(image.shape[-2:]) != tuple(resolution):
        image = F.interpolate(image, size=resolution, mode="area")
    width = image.shape[-1]
    padded = torch.cat([image[..., -1:], image, image[..., :1]], dim=-1)
    grid = directions_to_equirect(vertices.to(torch.float64))
    grid[..., 0] = grid[..., 0] * width / (width + 2)  # account for the two wrapped columns
    grid = grid.to(image.dtype).to(image.device)[None, None].expand(image.shape[0], 1, -1, -1)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]


@lru_cache(maxsize=32)
def _pixel_faces(level: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """For every pixel: the three vertex ids of the face its ray hits, and barycentric weights. (H*W, 3) each."""
    levels = icosphere(level)
    rays = equirect_directions(height, width).reshape(-1, 3)
    face = torch.full((rays.shape[0],), -1, dtype=torch.int64)
    # level 0: test all 20 faces; then descend into the 4 children of the face found
    candidates = torch.arange(20).expand(rays.shape[0], 20)
    for lvl, mesh in enumerate(levels):
        if lvl > 0:
            candidates = mesh.children[face]
        tri = mesh.vertices[mesh.faces[candidates]]  # (P, K, 3, 3)
        inside = torch.ones(candidates.shape, dtype=torch.bool)
        score = torch.full(candidates.shape, math.inf, dtype=torch.float64)
        for i in range(3):
            edge_normal = torch.cross(tri[:, :, i], tri[:, :, (i + 1) % 3], dim=-1)
            side = (edge_normal * rays[:, None]).sum(-1)
            inside &= side >= -1e-12
            score = torch.minimum(score, side)
        pick = torch.where(inside.any(1), inside.float().argmax(1), score.argmax(1))
        face = candidates.gather(1, pick[:, None])[:, 0]
    corners = levels[-1].faces[face]
    tri = levels[-1].vertices[corners]  # (P, 3, 3)
    weights = torch.linalg.solve(tri.transpose(1, 2), rays)  # ray = sum_i w_i * corner_i (up to scale)
    weights = weights.clamp_min(0)
    weights = weights / weights.sum(1, keepdim=True)
    return corners, weights.float()


def project_to_equirect(values: Tensor, level: int, height: int, width: int) -> Tensor:
    """Vertex values (B, C, V) of a level-``level`` icosphere -> equirectangular image (B, C, H, W).

    Each pixel interpolates the three vertices of the face its ray hits, with barycentric weights (precomputed
    once per level and size).
    """
    corners, weights = _pixel_faces(level, height, width)
    corners, weights = corners.to(values.device), weights.to(values.device, values.dtype)
    picked = values[:, :, corners]  # (B, C, P, 3)
    return (picked * weights).sum(-1).reshape(values.shape[0], values.shape[1], height, width)
