"""LLFF loader on a tiny synthetic scene written by the test, and NDC rays."""

import numpy as np
import pytest
import torch

from neuralfields.media import save_png
from neuralfields.data.llff import average_pose, load_llff_scene, save_llff_scene
from neuralfields.data.scenes import resolve_scene_dir
from neuralfields.errors import NeuralFieldsError
from neuralfields.rendering.cameras import image_rays, ndc_rays

NUM_VIEWS, HEIGHT, WIDTH, FOCAL = 10, 16, 24, 20.0


def _opengl_poses() -> np.ndarray:
    """Forward-facing cameras (OpenGL axes) spread on a small patch, slightly rotated, far from the origin."""
    rng = np.random.default_rng(0)
    poses = np.tile(np.eye(4), (NUM_VIEWS, 1, 1))
    for pose in poses:
        angle = rng.uniform(-0.2, 0.2)
        pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        pose[:3, 3] = [rng.uniform(-1, 1), rng.uniform(-1, 1), 5.0 + rng.uniform(-0.3, 0.3)]
    return poses


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(NUM_VIEWS, HEIGHT, WIDTH, 3)) / 255.0
    bounds = np.stack([rng.uniform(2.0, 3.0, NUM_VIEWS), rng.uniform(8.0, 9.0, NUM_VIEWS)], axis=1)
    return save_llff_scene(tmp_path / "fern", _opengl_poses(), bounds, images, FOCAL), images, bounds


def test_poses_are_converted_scaled_and_recentred(scene):
    scene_dir, _, bounds = scene
    views = load_llff_scene(scene_dir, split="all", factor=1)
    loaded = views.camtoworlds.double().numpy()
    assert np.allclose(average_pose(loaded), np.eye(4), atol=1e-5)  # recentred on the mean pose
    original = _opengl_poses()
    scale = 1.0 / (bounds.min() * 0.75)
    for i in range(1, NUM_VIEWS):  # relative poses survive recentring; translations shrink by `scale`
        expected = np.linalg.inv(original[0]) @ original[i]
        relative = np.linalg.inv(loaded[0]) @ loaded[i]
        assert np.allclose(relative[:3, :3], expected[:3, :3], atol=1e-5)
        assert np.allclose(relative[:3, 3], expected[:3, 3] * scale, atol=1e-5)
    assert (views.near, views.far, views.ndc) == (0.0, 1.0, True)
    assert views.focal == pytest.approx(FOCAL)


def test_holdout_split_and_factor_from_images_folder(scene):
    scene_dir, images, _ = scene
    train = load_llff_scene(scene_dir, split="train", factor=2, holdout_every=4)
    test = load_llff_scene(scene_dir, split="test", factor=2, holdout_every=4)
    assert test.names == ["IMG_000.png", "IMG_004.png", "IMG_008.png"]
    assert len(train) == 7 and "IMG_004.png" not in train.names
    assert (test.height, test.width) == (8, 12) and test.focal == pytest.approx(FOCAL / 2)
    block_mean = images[4].reshape(8, 2, 12, 2, 3).mean(axis=(1, 3))
    assert np.allclose(test.images[1].numpy(), block_mean, atol=1e-6)


def test_prefers_downscaled_images_folder(scene):
    scene_dir, _, _ = scene
    (scene_dir / "images_4").mkdir()
    for i in range(NUM_VIEWS):
        save_png(scene_dir / "images_4" / f"small_{i}.png", np.full((4, 6, 3), 0.2))
    views = load_llff_scene(scene_dir, split="all", factor=4)
    assert views.names[0] == "small_0.png"
    assert torch.allclose(views.images, torch.full_like(views.images, 51 / 255))
    assert views.focal == pytest.approx(FOCAL / 4)


def test_ndc_rays_map_onto_the_world_ray():
    """NDC points o' + t d' are the perspective images of points on the world ray; t=0 is z=-near."""
    height, width, focal, near = 12, 16, 14.0, 1.0
    camtoworld = torch.eye(4)
    camtoworld[:3, 3] = torch.tensor([0.1, -0.2, 0.3])
    origins, directions = (a.reshape(-1, 3) for a in image_rays(camtoworld, height, width, focal))
    ndc_o, ndc_d = ndc_rays(origins, directions, focal, width, height, near)
    assert torch.allclose(ndc_o[:, 2], torch.full((len(ndc_o),), -1.0), atol=1e-5)
    for t in (0.0, 0.3, 0.9):
        point = (ndc_o + t * ndc_d).double()
        z = 2.0 * near / (point[:, 2] - 1.0)  # invert the NDC projection
        world = torch.stack([-point[:, 0] * z * width / (2 * focal), -point[:, 1] * z * height / (2 * focal), z], -1)
        offset = world - origins.double()
        cross = torch.linalg.cross(offset, directions.double(), dim=-1)
        assert cross.norm(dim=-1).max() < 1e-4  # on the original ray
        if t == 0.0:
            assert torch.allclose(z, torch.full_like(z, -near), atol=1e-5)


def test_missing_poses_bounds(scene):
    scene_dir, _, _ = scene
    (scene_dir / "poses_bounds.npy").unlink()
    with pytest.raises(NeuralFieldsError, match=r"poses_bounds\.npy not found in .*fern; an LLFF scene holds"):
        load_llff_scene(scene_dir)


def test_misshaped_poses_bounds(scene):
    scene_dir, _, _ = scene
    np.save(scene_dir / "poses_bounds.npy", np.zeros((NUM_VIEWS, 16)))
    with pytest.raises(NeuralFieldsError, match=r"poses_bounds\.npy has shape \(10, 16\); expected \(N, 17\)"):
        load_llff_scene(scene_dir)


def test_unreadable_image_names_file(scene):
    scene_dir, _, _ = scene
    (scene_dir / "images" / "IMG_003.png").write_text("this is not a png")
    with pytest.raises(NeuralFieldsError) as info:
        load_llff_scene(scene_dir, factor=1)
    assert str(info.value) == f"{scene_dir / 'images' / 'IMG_003.png'} is not a readable image (PNG/JPEG)"


def test_data_dir_may_be_the_llff_scene_folder(scene):
    """A --data-dir holding poses_bounds.npy is the scene folder, whatever the scene name."""
    scene_dir, _, _ = scene
    assert resolve_scene_dir("fern", data_dir=scene_dir.parent) == scene_dir
    assert resolve_scene_dir("horns", data_dir=scene_dir) == scene_dir


def test_pose_count_must_match_images(scene):
    scene_dir, _, _ = scene
    (scene_dir / "images" / "IMG_009.png").unlink()
    with pytest.raises(NeuralFieldsError, match=r"has 10 poses but .*images has 9 images"):
        load_llff_scene(scene_dir, factor=1)
