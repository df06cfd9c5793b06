"""Mesh export (PLY/OBJ/GLB) and scripts/export_mesh.py on trained runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from neuralfields.errors import NeuralFieldsError
from neuralfields.meshing.marching import extract_mesh
from neuralfields.meshing.mesh_io import EXPORT_FORMATS, export_mesh
from neuralfields.meshing.shapes import Sphere
from neuralfields.config import defaults, overlay
from neuralfields.training.occupancy import OccupancyConfig, train_occupancy



def coloured_sphere() -> trimesh.Trimesh:
    sphere = Sphere(0.3)
    return extract_mesh(
        lambda p: -torch.from_numpy(sphere.signed_distance(p.numpy())),
        np.array([[-0.5] * 3, [0.5] * 3]), 24, color_fn=lambda p: p + 0.5, progress=False,
    )


@pytest.mark.parametrize("file_format", EXPORT_FORMATS)
def test_exported_files_load_back(tmp_path, file_format):
    mesh = coloured_sphere()
    path = export_mesh(mesh, tmp_path / f"sphere.{file_format}")
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces)
    assert loaded.bounds == pytest.approx(mesh.bounds, abs=1e-5)
    if file_format in ("ply", "glb"):
        assert np.abs(loaded.visual.vertex_colors.astype(int) - mesh.visual.vertex_colors).max() <= 1


def test_unknown_export_format_is_refused(tmp_path):
    with pytest.raises(NeuralFieldsError, match="unsupported mesh format 'stl' \\(choose one of ply, obj, glb\\)"):
        export_mesh(coloured_sphere(), tmp_path / "sphere.stl")


def test_export_script_meshes_an_occupancy_run_in_original_coordinates(tmp_path, run_script):
    mesh_file = tmp_path / "ball.obj"
    Sphere(1.0, (0.0, 10.0, 0.0)).mesh(4).export(mesh_file)
    train_occupancy(overlay(defaults(OccupancyConfig), {
        "mesh": str(mesh_file), "spec": "sine:1", "width": 64, "num_uniform": 10_000, "num_surface": 10_000,
        "steps": 150, "batch_size": 1024, "lr": 3e-3,
        "eval_uniform_points": 5_000, "eval_grid_resolution": 16, "eval_surface_samples": 2_000,
        "device": "cpu", "cache_dir": str(tmp_path / "cache"),
    }, "test"), run_dir=tmp_path / "run", progress=False)
    code, _, stderr = run_script("export_mesh.py", str(tmp_path / "run"), "--resolution", "32", "--format", "glb")
    assert code == 0, stderr
    mesh = trimesh.load(tmp_path / "run" / "mesh_32.glb", force="mesh")
    assert mesh.bounds == pytest.approx(np.array([[-1, 9, -1], [1, 11, 1]]), abs=0.1)


def test_export_script_refuses_a_folder_that_is_not_a_run(tmp_path, run_script):
    code, _, stderr = run_script("export_mesh.py", str(tmp_path))
    assert code == 2
    assert stderr.strip() == f"error: {tmp_path} is not a run folder: config.yaml is missing"


def test_export_script_meshes_a_nerf_run_with_vertex_colours(tmp_path, run_script):
    """A small untrained NeRF run folder: the mesh lies in the scene box, colours come from the field."""
    from neuralfields.config import to_mapping
    from neuralfields.storage import save_checkpoint, save_config
    from neuralfields.training.nerf import NerfConfig, build_model

    config = overlay(defaults(NerfConfig), {
        "spec": "dense", "num_layers": 2, "width": 16, "color_width": 8, "xyz_freqs": 2, "dir_freqs": 1,
        "grid_resolution": 8, "aabb": [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], "device": "cpu",
    }, "test")
    torch.manual_seed(0)
    model = build_model(config)
    save_checkpoint(tmp_path, 1, model)
    save_config(tmp_path, to_mapping(config))
    field = model.field.eval()
    with torch.no_grad():
        density = field.query_density(torch.rand(4096, 3) * 2 - 1)
    level = float(density.median())

    code, _, stderr = run_script("export_mesh.py", str(tmp_path), "--resolution", "24", "--level", f"{level:.6f}")
    assert code == 0, stderr
    mesh = trimesh.load(tmp_path / "mesh_24.ply", force="mesh", process=False)
    assert len(mesh.faces) > 0
    assert np.all(np.abs(mesh.vertices) <= 1.0 + 1e-6)
    code, _, stderr = run_script("export_mesh.py", str(tmp_path), "--resolution", "8", "--level", "1e9")
    assert code == 2
    last_line = stderr.strip().splitlines()[-1]  # after the progress bar
    assert last_line.startswith("error: field never crosses level 1e+09 (range ")
    assert last_line.endswith("no surface to extract; pass --level inside that range")
    with torch.no_grad():
        expected = field.query_color(torch.from_numpy(np.asarray(mesh.vertices, np.float32))).numpy()
    assert np.abs(mesh.visual.vertex_colors[:, :3] / 255.0 - expected).max() < 0.01
