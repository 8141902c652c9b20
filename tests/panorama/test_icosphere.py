"""Icosphere construction and the equirectangular <-> vertex maps."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lightning_hpml.modules.layers.icosphere import (
    directions_to_equirect,
    equirect_directions,
    icosphere,
    project_to_equirect,
    sample_equirect,
)


def smooth(directions: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.3 * directions[..., 0] * directions[..., 1] + 0.2 * directions[..., 2]


@pytest.mark.parametrize("level", range(6))
def test_vertex_and_face_counts_and_unit_vertices(level):
    mesh = icosphere(level)[level]
    assert mesh.num_vertices == 10 * 4**level + 2 and mesh.faces.shape == (20 * 4**level, 3)
    torch.testing.assert_close(mesh.vertices.norm(dim=1), torch.ones(mesh.num_vertices, dtype=torch.float64))
    edges = {tuple(sorted(e)) for f in mesh.faces.tolist() for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    assert mesh.num_vertices - len(edges) + mesh.faces.shape[0] == 2  # Euler characteristic of a sphere


def test_coarser_levels_are_a_prefix_and_parents_are_midpoints():
    levels = icosphere(3)
    for coarse, fine in itertools.pairwise(levels):
        assert torch.equal(fine.vertices[: coarse.num_vertices], coarse.vertices)
        mid = fine.vertices[fine.parents].sum(1)
        torch.testing.assert_close(fine.vertices[coarse.num_vertices :], mid / mid.norm(dim=1, keepdim=True))
        assert fine.children.shape == (coarse.faces.shape[0], 4)


def test_rings_are_symmetric_and_ordered_counter_clockwise():
    mesh = icosphere(3)[3]
    rings = mesh.neighbours
    assert torch.equal(rings[:, 0], torch.arange(mesh.num_vertices))
    for i in (0, 5, 57, 400):
        ring = [j for j in rings[i, 1:].tolist() if j != i]
        assert len(ring) == (5 if i < 12 else 6)
        assert all(i in rings[j, 1:].tolist() for j in ring)  # adjacency is symmetric
        # consecutive neighbours are adjacent to each other (a ring, not a random order)
        assert all(ring[(k + 1) % len(ring)] in rings[ring[k], 1:].tolist() for k in range(len(ring)))


def test_direction_convention_and_equirect_coordinates():
    d = equirect_directions(4, 8)
    assert d[0, 0, 1] < 0 and d[-1, 0, 1] > 0  # top row looks up (y down)
    grid = directions_to_equirect(torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    torch.testing.assert_close(grid, torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, -1.0]]))


def test_sampling_onto_the_mesh_and_back_reproduces_a_smooth_panorama():
    level, height, width = 5, 64, 128
    image = smooth(equirect_directions(height, width)).float()[None, None]
    mesh = icosphere(level)[level]
    on_mesh = sample_equirect(image, mesh.vertices)
    assert (on_mesh[0, 0] - smooth(mesh.vertices).float()).abs().max() < 1e-2
    back = project_to_equirect(on_mesh, level, height, width)
    assert (back - image).abs().max() < 5e-3
    coarse = project_to_equirect(sample_equirect(image, icosphere(2)[2].vertices), 2, height, width)
    assert (coarse - image).abs().max() > (back - image).abs().max()  # finer meshes are more accurate


def test_longitude_wraps_around_the_seam():
    height, width = 8, 16
    image = torch.zeros(1, 1, height, width)
    image[..., 0] = 1.0
    image[..., -1] = 1.0  # both edge columns bright: the seam at longitude -pi/+pi is bright
    seam = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64)  # straight back
    assert float(sample_equirect(image, seam)[0, 0, 0]) == pytest.approx(1.0)
    assert math.isclose(float(sample_equirect(image, torch.tensor([[0.0, 0.0, 1.0]]))[0, 0, 0]), 0.0, abs_tol=1e-6)
