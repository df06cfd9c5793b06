"""The embedded demo scene: loader round trip against the ground-truth mesh, determinism, caching."""

import json

import numpy as np
import open3d as o3d
import pytest
import torch
import trimesh

from neuralfields.data.blender import load_blender_split
from neuralfields.data.demo_scene import build_demo_parts, ensure_demo_scene, raycasting_scene
from neuralfields.data.scenes import resolve_scene_dir
from neuralfields.errors import NeuralFieldsError
from neuralfields.rendering.cameras import image_rays

TINY = dict(resolution=32, num_train=4, num_val=2, num_test=3)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return ensure_demo_scene(tmp_path_factory.mktemp("data") / "demo", seed=0, **TINY)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_alpha_matches_ground_truth_mesh_hits(demo_root, split):
    """Loaded cameras + focal cast rays that hit mesh.ply exactly where alpha > 0, within near/far."""
    views = load_blender_split(demo_root, split)
    assert len(views) == TINY[f"num_{split}"] and (views.height, views.width) == (32, 32)
    mesh = trimesh.load(demo_root / "mesh.ply", force="mesh")
    scene = raycasting_scene([mesh])
    for camtoworld, alpha in zip(views.camtoworlds, views.alphas):
        origins, directions = image_rays(camtoworld, views.height, views.width, views.focal)
        t_hit = scene.cast_rays(o3d.core.Tensor(torch.cat([origins, directions], -1).numpy()))["t_hit"].numpy()
        hit = np.isfinite(t_hit)
        assert np.array_equal(hit, alpha.numpy() > 0)
        assert 0.02 < hit.mean() < 0.8  # the object is in view and not filling it
        assert (t_hit[hit] > views.near).all() and (t_hit[hit] < views.far).all()
    assert set(np.unique(views.alphas.numpy())) <= {0.0, 1.0}


def test_object_fits_the_bounds_and_parts_have_distinct_colours(demo_root):
    mesh = trimesh.load(demo_root / "mesh.ply", force="mesh")
    assert (np.abs(mesh.bounds) < 1.5).all()
    parts = build_demo_parts()
    assert len(parts) >= 5
    colours = np.array([part.colour_a for part in parts])
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1) + np.eye(len(parts))
    assert distances.min() > 0.15
    # thin structures: some parts are much thinner than the object
    assert min(np.sort(part.mesh.extents)[0] for part in parts) < 0.1


def test_views_show_several_colours_and_texture(demo_root):
    views = load_blender_split(demo_root, "test", background="black")
    covered = views.images[views.alphas > 0]
    quantised = torch.unique((covered * 4).round(), dim=0)
    assert len(quantised) >= 8  # many distinct colours, not a flat silhouette


def test_same_seed_gives_identical_files(tmp_path, demo_root):
    again = ensure_demo_scene(tmp_path / "again", seed=0, **TINY)
    for name in ["train/r_0.png", "test/r_2.png", "transforms_train.json", "mesh.ply"]:
        assert (again / name).read_bytes() == (demo_root / name).read_bytes(), name


def test_other_seed_moves_the_training_cameras(tmp_path, demo_root):
    other = ensure_demo_scene(tmp_path / "other", seed=1, **TINY)
    poses = [load_blender_split(root, "train").camtoworlds for root in (demo_root, other)]
    assert not torch.allclose(poses[0], poses[1])
    test_poses = [load_blender_split(root, "test").camtoworlds for root in (demo_root, other)]
    assert torch.equal(test_poses[0], test_poses[1])  # the test orbit does not depend on the seed


def test_reuses_cache_and_regenerates_on_other_settings(tmp_path):
    root = ensure_demo_scene(tmp_path / "demo", **TINY)
    png = root / "train" / "r_0.png"
    png.write_bytes(b"marker: proves the folder was not regenerated")
    assert ensure_demo_scene(tmp_path / "demo", **TINY) == root
    assert png.read_bytes().startswith(b"marker")
    ensure_demo_scene(tmp_path / "demo", **{**TINY, "resolution": 24})
    assert json.loads((root / "demo_scene.json").read_text())["resolution"] == 24
    assert load_blender_split(root, "train").width == 24
    assert not list(tmp_path.glob(".demo-*"))  # no temporary folder left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(NeuralFieldsError, match=r"mine exists and is not a demo scene folder"):
        ensure_demo_scene(tmp_path / "mine", **TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_resolve_demo_scene_generates_the_default_scene(tmp_path):
    root = resolve_scene_dir("demo", data_dir=tmp_path)
    assert root == tmp_path / "demo"
    views = load_blender_split(root, "train")
    assert (len(views), views.width) == (40, 100)
    assert resolve_scene_dir("demo", data_dir=root) == root  # --data-dir may be the demo folder itself
    assert not (root / "demo").exists()
