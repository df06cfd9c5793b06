"""Cameras/rays and the Blender-format loader: numerics against independent references, bad inputs."""

import json
import math

import numpy as np
import pytest
import torch

from neuralfields.data.blender import load_blender_split
from neuralfields.data.scenes import resolve_scene_dir
from neuralfields.media import save_png
from neuralfields.errors import NeuralFieldsError
from neuralfields.rendering.cameras import image_rays, orbit_camtoworlds, pixel_rays

ANGLE_X = 0.9


def _pose(seed: int) -> np.ndarray:
    """A random rigid camera-to-world matrix."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3) * 3
    return pose


def _write_scene(scene_dir, rgba_images, split="train", poses=None, angle=ANGLE_X):
    """Write a tiny Blender-format split from float RGBA arrays."""
    (scene_dir / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, rgba in enumerate(rgba_images):
        save_png(scene_dir / split / f"r_{i}.png", rgba)
        pose = _pose(i) if poses is None else poses[i]
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": np.asarray(pose).tolist()})
    (scene_dir / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return scene_dir


def _random_rgba(height, width, seed):
    """Random RGBA quantised to 8 bits, so the PNG round trip is exact."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 4)).astype(np.float32) / 255.0


# ----------------------------------------------------------------------------- cameras


def test_image_rays_pass_through_projected_points():
    """A world point projected with an independent pinhole model lies on the ray of its pixel."""
    height, width, focal = 30, 40, 35.0
    camtoworld = _pose(3)
    worldtocam = np.linalg.inv(camtoworld)
    rng = np.random.default_rng(0)
    # points in front of the camera, expressed in camera space then moved to world space
    cam_points = np.stack([rng.uniform(-0.5, 0.5, 50), rng.uniform(-0.3, 0.3, 50), -rng.uniform(1, 5, 50)], -1)
    world_points = cam_points @ camtoworld[:3, :3].T + camtoworld[:3, 3]
    in_cam = world_points @ worldtocam[:3, :3].T + worldtocam[:3, 3]
    u = focal * in_cam[:, 0] / -in_cam[:, 2] + width / 2  # continuous pixel coordinates, x right
    v = -focal * in_cam[:, 1] / -in_cam[:, 2] + height / 2  # y down
    origins, directions = image_rays(torch.tensor(camtoworld, dtype=torch.float32), height, width, focal)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(height, width), atol=1e-6)
    for point, x, y in zip(world_points, u, v):
        px, py = int(np.floor(x)), int(np.floor(y))
        assert 0 <= px < width and 0 <= py < height
        centre_dir = directions[py, px].double().numpy()
        # the ray through the exact sub-pixel position differs from the centre ray by < half a pixel
        to_point = (point - origins[py, px].double().numpy())
        to_point /= np.linalg.norm(to_point)
        assert np.arccos(np.clip(to_point @ centre_dir, -1, 1)) < 0.75 / focal


def test_image_rays_centre_pixel_and_corners_match_pinhole():
    """Exact directions: the ray of pixel (x, y) is R @ normalise((x+.5-W/2)/f, -(y+.5-H/2)/f, -1)."""
    height, width, focal = 6, 8, 5.0
    camtoworld = _pose(7)
    origins, directions = image_rays(torch.tensor(camtoworld, dtype=torch.float32), height, width, focal)
    for x, y in [(0, 0), (7, 0), (0, 5), (7, 5), (3, 2)]:
        cam = np.array([(x + 0.5 - width / 2) / focal, -(y + 0.5 - height / 2) / focal, -1.0])
        expected = camtoworld[:3, :3] @ (cam / np.linalg.norm(cam))
        assert np.allclose(directions[y, x].numpy(), expected, atol=1e-6)
        assert np.allclose(origins[y, x].numpy(), camtoworld[:3, 3], atol=1e-6)


def test_pixel_rays_match_image_rays():
    height, width, focal = 9, 11, 7.0
    camtoworlds = torch.tensor(np.stack([_pose(1), _pose(2), _pose(3)]), dtype=torch.float32)
    rng = np.random.default_rng(1)
    px = torch.tensor(rng.integers(0, width, 20))
    py = torch.tensor(rng.integers(0, height, 20))
    view = torch.tensor(rng.integers(0, 3, 20))
    origins, directions = pixel_rays(camtoworlds, px, py, view, focal, height, width)
    for i in range(20):
        ref_o, ref_d = image_rays(camtoworlds[view[i]], height, width, focal)
        assert torch.allclose(origins[i], ref_o[py[i], px[i]], atol=1e-6)
        assert torch.allclose(directions[i], ref_d[py[i], px[i]], atol=1e-6)


def test_orbit_cameras_look_at_target_from_radius_and_elevation():
    target = (0.2, -0.1, 0.3)
    poses = orbit_camtoworlds(12, radius=4.0, elevation_deg=30.0, target=target)
    offsets = poses[:, :3, 3] - torch.tensor(target)
    assert torch.allclose(offsets.norm(dim=-1), torch.full((12,), 4.0), atol=1e-5)
    assert torch.allclose(offsets[:, 2], torch.full((12,), 2.0), atol=1e-5)  # 4 * sin(30 deg)
    _, directions = image_rays(poses[0], 2, 2, 1.0)  # the four rays straddle the optical axis
    axis = -poses[:, :3, 2]  # camera looks down -Z
    assert torch.allclose(axis, -offsets / 4.0, atol=1e-5)
    assert torch.allclose(torch.linalg.det(poses[:, :3, :3]), torch.ones(12), atol=1e-5)
    assert (poses[:, 2, 1] > 0).all()  # image up points to world +Z side
    assert torch.allclose(directions.reshape(4, 3).mean(0) / directions.reshape(4, 3).mean(0).norm(), axis[0], atol=1e-5)


# ----------------------------------------------------------------------------- loader


def test_focal_from_camera_angle_and_downscale(tmp_path):
    scene = _write_scene(tmp_path / "s", [_random_rgba(8, 12, i) for i in range(2)])
    full = load_blender_split(scene, "train")
    assert (full.height, full.width) == (8, 12)
    assert full.focal == pytest.approx(0.5 * 12 / math.tan(0.5 * ANGLE_X))
    half = load_blender_split(scene, "train", downscale=2)
    assert (half.height, half.width) == (4, 6)
    assert half.focal == pytest.approx(full.focal / 2)
    assert (full.near, full.far) == (2.0, 6.0)
    assert full.names == ["./train/r_0", "./train/r_1"]
    assert torch.allclose(full.camtoworlds[1], torch.tensor(_pose(1), dtype=torch.float32))


def test_downscale_is_a_block_mean_of_composited_pixels(tmp_path):
    rgba = [_random_rgba(8, 12, i) for i in range(2)]
    scene = _write_scene(tmp_path / "s", rgba)
    views = load_blender_split(scene, "train", downscale=4, background="white")
    for n, image in enumerate(rgba):
        composited = image[..., :3] * image[..., 3:] + (1 - image[..., 3:])
        for by in range(2):
            for bx in range(3):
                block = composited[4 * by:4 * by + 4, 4 * bx:4 * bx + 4]
                assert np.allclose(views.images[n, by, bx].numpy(), block.reshape(-1, 3).mean(0), atol=1e-6)
                alpha_block = image[4 * by:4 * by + 4, 4 * bx:4 * bx + 4, 3]
                assert views.alphas[n, by, bx].item() == pytest.approx(alpha_block.mean(), abs=1e-6)


def test_white_and_black_backgrounds(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.float32)
    rgba[0, 0] = (1.0, 0.0, 0.0, 1.0)  # opaque red
    rgba[0, 1] = (0.0, 0.0, 1.0, 0.0)  # fully transparent: the background shows
    rgba[1, 0] = (0.0, 1.0, 0.0, 128 / 255)  # half green
    scene = _write_scene(tmp_path / "s", [rgba])
    white = load_blender_split(scene, "train", background="white").images[0].numpy()
    black = load_blender_split(scene, "train", background="black").images[0].numpy()
    a = 128 / 255
    assert np.allclose(white[0, 0], (1, 0, 0)) and np.allclose(black[0, 0], (1, 0, 0))
    assert np.allclose(white[0, 1], (1, 1, 1)) and np.allclose(black[0, 1], (0, 0, 0))
    assert np.allclose(white[1, 0], (1 - a, 1, 1 - a), atol=1e-6)
    assert np.allclose(black[1, 0], (0, a, 0), atol=1e-6)


def test_near_far_keys_override_defaults(tmp_path):
    scene = _write_scene(tmp_path / "s", [_random_rgba(4, 4, 0)])
    meta = json.loads((scene / "transforms_train.json").read_text())
    meta.update(near=0.5, far=3.5)
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    views = load_blender_split(scene, "train")
    assert (views.near, views.far) == (0.5, 3.5)


def test_resolve_scene_dir(tmp_path):
    (tmp_path / "lego").mkdir()
    assert resolve_scene_dir("lego", data_dir=tmp_path) == tmp_path / "lego"
    assert resolve_scene_dir(str(tmp_path / "lego"), data_dir="/elsewhere") == tmp_path / "lego"
    with pytest.raises(NeuralFieldsError, match=r"scene folder not found: .*chair; .*nerf_synthetic\.zip"):
        resolve_scene_dir("chair", data_dir=tmp_path)


def test_resolve_scene_dir_accepts_the_scene_folder_as_data_dir(tmp_path):
    """--data-dir may be the scene folder itself: named like the scene, or holding a scene's files."""
    scene = _write_scene(tmp_path / "lego", [_random_rgba(4, 4, 0)])
    assert resolve_scene_dir("lego", data_dir=scene) == scene
    assert resolve_scene_dir("chair", data_dir=scene) == scene  # transforms_train.json, whatever the name
    (tmp_path / "empty" / "ship").mkdir(parents=True)
    assert resolve_scene_dir("ship", data_dir=tmp_path / "empty" / "ship") == tmp_path / "empty" / "ship"
    (scene / "lego").mkdir()  # a scene folder inside data_dir still wins
    assert resolve_scene_dir("lego", data_dir=scene) == scene / "lego"


def test_resolve_scene_dir_names_both_data_dir_forms_and_paths_tried(tmp_path):
    with pytest.raises(NeuralFieldsError) as info:
        resolve_scene_dir("lego", data_dir=tmp_path / "data")
    message = str(info.value)
    assert message.startswith(f"scene folder not found: {tmp_path / 'data' / 'lego'}; --data-dir {tmp_path / 'data'} ")
    assert "folder holding the scene folders (DIR/lego)" in message
    assert ("scene folder itself (named 'lego' or holding transforms_train.json, transforms.json, poses_bounds.npy "
            "or a COLMAP sparse model)") in message
    assert "nerf_synthetic.zip" in message and "<data>/nerf_synthetic" not in message and "\n" not in message


# ----------------------------------------------------------------------------- bad inputs


def _edit_json(scene, edit):
    path = scene / "transforms_train.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.fixture
def scene(tmp_path):
    return _write_scene(tmp_path / "scene", [_random_rgba(8, 8, i) for i in range(3)])


def test_missing_scene_folder_names_path_and_dataset(tmp_path):
    with pytest.raises(NeuralFieldsError) as info:
        load_blender_split(tmp_path / "nope", "train")
    message = str(info.value)
    assert str(tmp_path / "nope") in message and "nerf_synthetic.zip" in message and "Mildenhall" in message
    assert "\n" not in message


def test_missing_transforms_file(scene):
    with pytest.raises(NeuralFieldsError, match=r"transforms file not found: .*transforms_val\.json"):
        load_blender_split(scene, "val")


def test_invalid_json(scene):
    (scene / "transforms_train.json").write_text('{"camera_angle_x": 0.7, "frames": [')
    with pytest.raises(NeuralFieldsError, match=r"malformed JSON in .*transforms_train\.json: .* at line 1"):
        load_blender_split(scene, "train")


@pytest.mark.parametrize("key", ["camera_angle_x", "frames"])
def test_missing_top_level_key(scene, key):
    _edit_json(scene, lambda meta: meta.pop(key))
    with pytest.raises(NeuralFieldsError, match=rf"malformed .*transforms_train\.json: missing key '{key}'"):
        load_blender_split(scene, "train")


def test_frame_missing_transform_matrix(scene):
    _edit_json(scene, lambda meta: meta["frames"][1].pop("transform_matrix"))
    with pytest.raises(NeuralFieldsError,
                       match=r"transforms_train\.json: frame 1 is missing key 'transform_matrix'"):
        load_blender_split(scene, "train")


def test_wrong_matrix_shape(scene):
    _edit_json(scene, lambda meta: meta["frames"][2].__setitem__("transform_matrix", [[1, 0, 0], [0, 1, 0]]))
    with pytest.raises(NeuralFieldsError,
                       match=r"transforms_train\.json: frame 2: 'transform_matrix' must be 4x4 \(or 3x4\), got shape \(2, 3\)"):
        load_blender_split(scene, "train")


def test_bad_camera_angle(scene):
    _edit_json(scene, lambda meta: meta.__setitem__("camera_angle_x", "wide"))
    with pytest.raises(NeuralFieldsError, match=r"'camera_angle_x' must be an angle in \(0, pi\) radians, got 'wide'"):
        load_blender_split(scene, "train")


def test_unreadable_image_names_file(scene):
    (scene / "train" / "r_1.png").write_text("this is not a png")
    with pytest.raises(NeuralFieldsError) as info:
        load_blender_split(scene, "train")
    assert str(info.value) == f"{scene / 'train' / 'r_1.png'} is not a readable image (PNG/JPEG)"


def test_missing_image_names_file(scene):
    (scene / "train" / "r_2.png").unlink()
    with pytest.raises(NeuralFieldsError, match=r"image file not found: .*train/r_2\.png"):
        load_blender_split(scene, "train")


def test_images_of_different_sizes(scene):
    save_png(scene / "train" / "r_1.png", _random_rgba(8, 6, 9))
    with pytest.raises(NeuralFieldsError,
                       match=r"image .*train/r_1\.png is 6x8 but earlier images of transforms_train\.json are 8x8"):
        load_blender_split(scene, "train")


def test_downscale_must_divide_size(scene):
    with pytest.raises(NeuralFieldsError, match=r"downscale 3 does not divide the size 8x8 of .*r_0\.png"):
        load_blender_split(scene, "train", downscale=3)


def test_unknown_background_and_split(scene):
    with pytest.raises(NeuralFieldsError, match=r"background must be one of \['black', 'white'\], got 'grey'"):
        load_blender_split(scene, "train", background="grey")
    with pytest.raises(NeuralFieldsError, match=r"split must be one of train, val, test, got 'dev'"):
        load_blender_split(scene, "dev")
