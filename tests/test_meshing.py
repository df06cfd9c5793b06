"""Labels, marching cubes, metrics and mesh loading/normalisation against known geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from neuralfields.errors import NeuralFieldsError
from neuralfields.meshing.labels import MeshOccupancy, SampleSpec, cached_training_points, uniform_points
from neuralfields.meshing.marching import extract_mesh, mesh_from_volume
from neuralfields.meshing.mesh_io import CUBE_HALF, Normalization, load_mesh, normalize_mesh
from neuralfields.meshing.metrics import iou, surface_metrics, uniform_iou
from neuralfields.meshing.shapes import Box, Sphere, default_shape

CUBE_VOLUME = (2 * CUBE_HALF) ** 3
UNIT_BOUNDS = np.array([[-0.5] * 3, [0.5] * 3])


def sphere_field(sphere: Sphere):
    """Signed field, positive inside (the marching-cubes convention for occupancy)."""
    return lambda points: -torch.from_numpy(sphere.signed_distance(points.numpy()))


@pytest.mark.parametrize("shape", [Sphere(0.3, (0.05, 0.0, -0.02)), Box((0.3, 0.2, 0.1), (0.0, 0.1, 0.0))])
def test_labels_match_analytic_inside_and_volume(shape):
    mesh = shape.mesh(5) if isinstance(shape, Sphere) else shape.mesh()
    points = uniform_points(200_000, np.random.default_rng(0))
    labels = MeshOccupancy(mesh)(points)
    assert np.mean(labels == shape.contains(points)) > 0.995
    assert labels.mean() * CUBE_VOLUME == pytest.approx(shape.volume, rel=0.03)


def test_labels_of_mesh_with_a_hole_warn_and_stay_right():
    mesh = Sphere(0.3).mesh(4)
    holed = trimesh.Trimesh(mesh.vertices, mesh.faces[3:], process=False)
    with pytest.warns(UserWarning, match="not watertight"):
        occupancy = MeshOccupancy(holed)
    points = uniform_points(50_000, np.random.default_rng(1))
    assert np.mean(occupancy(points) == Sphere(0.3).contains(points)) > 0.99


def test_iou_of_mesh_with_itself_is_one_and_overlap_matches_geometry():
    mesh = Sphere(0.3).mesh(4)
    occupancy = MeshOccupancy(mesh)
    assert uniform_iou(occupancy, occupancy) == 1.0
    # two 0.4-cubes shifted by 0.2 along x: intersection 0.2*0.4*0.4, union 2*0.4^3 - that
    a, b = Box((0.2, 0.2, 0.2), (-0.1, 0, 0)), Box((0.2, 0.2, 0.2), (0.1, 0, 0))
    points = uniform_points(200_000, np.random.default_rng(2))
    expected = 0.032 / (2 * 0.064 - 0.032)
    assert iou(a.contains(points), b.contains(points)) == pytest.approx(expected, abs=0.01)
    assert iou(np.zeros(5, bool), np.zeros(5, bool)) == 1.0


def test_marching_cubes_of_sphere_has_right_volume_area_and_place():
    sphere = Sphere(0.3, (0.1, -0.05, 0.0))
    mesh = extract_mesh(sphere_field(sphere), UNIT_BOUNDS, resolution=64, progress=False)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(sphere.volume, rel=0.01)  # positive: normals point out
    assert mesh.area == pytest.approx(sphere.area, rel=0.01)
    assert mesh.centroid == pytest.approx(sphere.center, abs=2e-3)


def test_marching_cubes_colours_vertices_from_colour_field():
    sphere = Sphere(0.3)
    mesh = extract_mesh(
        sphere_field(sphere), UNIT_BOUNDS, 32, color_fn=lambda p: p + 0.5, progress=False
    )
    colors = mesh.visual.vertex_colors[:, :3] / 255.0
    assert np.abs(colors - (mesh.vertices + 0.5)).max() < 0.01


def test_marching_cubes_without_surface_says_so():
    with pytest.raises(NeuralFieldsError, match="field never crosses level 0"):
        mesh_from_volume(np.ones((8, 8, 8), np.float32), UNIT_BOUNDS, 0.0)


def test_chamfer_and_normal_consistency():
    small, large = Sphere(0.3).mesh(5), Sphere(0.33).mesh(5)
    same = surface_metrics(small, small, num_samples=20_000)
    assert same["chamfer_l1"] < 0.004
    assert same["normal_consistency"] > 0.99
    apart = surface_metrics(small, large, num_samples=20_000)
    assert apart["chamfer_l1"] == pytest.approx(0.03, abs=0.004)
    box = surface_metrics(small, Box((0.25, 0.25, 0.25)).mesh(), num_samples=20_000)
    assert box["normal_consistency"] < 0.95


def test_normalisation_round_trips_and_fills_unit_cube():
    mesh = Box((2.0, 1.0, 0.5), (10.0, -3.0, 7.0)).mesh()
    unit, normalization = normalize_mesh(mesh)
    assert unit.bounds == pytest.approx(np.array([[-0.5, -0.25, -0.125], [0.5, 0.25, 0.125]]))
    points = np.random.default_rng(3).normal(size=(100, 3)) * 5
    restored = normalization.to_original(normalization.to_unit(points))
    assert restored == pytest.approx(points)
    again = Normalization.from_dict(normalization.to_dict())
    assert again.mesh_to_original(unit).vertices == pytest.approx(mesh.vertices)


def test_load_mesh_errors_name_the_problem(tmp_path):
    missing = tmp_path / "missing.obj"
    with pytest.raises(NeuralFieldsError, match=f"mesh file not found: {missing}"):
        load_mesh(missing)
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nthis is not a mesh\x00\xff")
    with pytest.raises(NeuralFieldsError, match=f"cannot read mesh {garbage}"):
        load_mesh(garbage)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing here\n")
    with pytest.raises(NeuralFieldsError, match=f"mesh {empty} has no triangles"):
        load_mesh(empty)
    flat_point = trimesh.Trimesh(np.zeros((3, 3)), [[0, 1, 2]], process=False)
    with pytest.raises(NeuralFieldsError, match="mesh has degenerate bounds"):
        normalize_mesh(flat_point)


def test_default_shape_is_closed_and_inside_unit_cube():
    mesh = default_shape(96)
    assert mesh.is_watertight and mesh.volume > 0
    assert np.all(np.abs(mesh.bounds) <= 0.5)


def test_training_points_are_cached_and_near_the_surface(tmp_path):
    mesh = Sphere(0.3).mesh(4)
    spec = SampleSpec(num_uniform=2000, num_surface=4000, noise_scales=(0.01,))
    points, labels = cached_training_points(mesh, "abc", spec, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again, again_labels = cached_training_points(mesh, "abc", spec, tmp_path)
    assert np.array_equal(points, again) and np.array_equal(labels, again_labels)
    near = np.abs(np.linalg.norm(points[2000:], axis=1) - 0.3)
    assert np.median(near) < 0.01
    assert np.mean(labels == Sphere(0.3).contains(points)) > 0.98
