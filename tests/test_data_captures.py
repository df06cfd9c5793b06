"""Photo captures in the formats people bring (LLFF, nerfstudio, COLMAP text and binary): which kind
of scene they are, how circling ones are spherified, the same rays from every format, resampling of
non-ideal cameras, and one-line errors for malformed inputs."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from neuralfields.data.captures import (
    crop_downscale, detect_scene_kind, distort, resample_to_pinhole, scene_layout, spherify, view_spread_deg,
)
from neuralfields.data.colmap import qvec_to_rotation, read_colmap_capture, rotation_to_qvec, save_colmap_model
from neuralfields.data.llff import read_llff_capture, save_llff_scene
from neuralfields.data.nerfstudio import read_nerfstudio_capture
from neuralfields.data.scenes import load_views, resolve_scene_dir, scene_format
from neuralfields.errors import NeuralFieldsError
from neuralfields.rendering.cameras import image_rays, look_at

FORMATS = ("llff", "nerfstudio", "colmap")


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(NeuralFieldsError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_formats_are_told_apart_by_the_folder_contents(circling_capture, tiny_scene):
    assert [scene_format(getattr(circling_capture, name)) for name in FORMATS] == list(FORMATS)
    assert scene_format(tiny_scene) == "blender"
    for name in FORMATS:  # --data-dir may be the capture folder itself, whatever the scene name
        folder = getattr(circling_capture, name)
        assert resolve_scene_dir("my_capture", data_dir=folder) == folder


@pytest.mark.parametrize("name", FORMATS)
def test_circling_capture_is_detected_and_spherified(circling_capture, name):
    """Every format: circling, origin at the object (where all optical axes meet), +Z up, cameras on
    the unit sphere (radius 4 -> 1), whatever world the capture came in."""
    views = load_views(getattr(circling_capture, name), "all")
    assert views.kind == "circling" and not views.ndc and views.spread_deg > 30
    positions = views.camtoworlds[:, :3, 3].double().numpy()
    expected = circling_capture.camtoworlds[:, :3, 3] / 4.0
    np.testing.assert_allclose(np.linalg.norm(positions, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(positions[:, 2], expected[:, 2], atol=1e-5)  # same heights: +Z is up
    np.testing.assert_allclose(positions[0], [np.hypot(*expected[0, :2]), 0.0, expected[0, 2]], atol=1e-5)
    origins, directions = image_rays(views.camtoworlds[0], views.height, views.width, views.focal)
    centre_ray = directions[12, 12] + directions[11, 11] + directions[11, 12] + directions[12, 11]
    towards_origin = -origins[0, 0] / origins[0, 0].norm()
    assert torch.dot(torch.nn.functional.normalize(centre_ray, dim=0), towards_origin) > 0.9999
    assert views.focal == pytest.approx(circling_capture.focal)


def test_every_format_gives_the_same_rays_and_pixels(circling_capture):
    views = {name: load_views(getattr(circling_capture, name), "train") for name in FORMATS}
    reference = views["llff"]
    assert len(reference) == 14 and reference.names[0] == "IMG_001.png"  # photos 0 and 8 held out
    for name, other in views.items():
        assert (other.height, other.width) == (24, 24) and other.focal == pytest.approx(reference.focal)
        torch.testing.assert_close(other.images, reference.images)
        for c2w, c2w_ref in zip(other.camtoworlds, reference.camtoworlds):
            for mine, theirs in zip(image_rays(c2w, 24, 24, other.focal), image_rays(c2w_ref, 24, 24, reference.focal)):
                torch.testing.assert_close(mine, theirs, atol=2e-5, rtol=0, msg=name)
    assert [len(load_views(getattr(circling_capture, name), "test")) for name in FORMATS] == [2, 2, 2]


def test_colmap_binary_model_reads_like_the_text_one(circling_capture, tmp_path):
    text = read_colmap_capture(circling_capture.colmap)
    shutil.copytree(circling_capture.colmap / "images", tmp_path / "images")
    poses = text.camtoworlds
    save_colmap_model(tmp_path / "bin", poses, np.zeros((len(poses), 24, 24, 3)), circling_capture.focal,
                      points=np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3]]), binary=True, model="SIMPLE_PINHOLE")
    shutil.copytree(tmp_path / "bin" / "sparse", tmp_path / "sparse")
    binary = read_colmap_capture(tmp_path)
    assert "binary" in binary.source and "text" in text.source
    np.testing.assert_allclose(binary.camtoworlds, text.camtoworlds, atol=1e-9)
    np.testing.assert_allclose(binary.intrinsics, text.intrinsics)
    assert binary.bounds is not None and (binary.bounds > 0).all()


def test_colmap_conventions_on_a_hand_written_model(tmp_path):
    """COLMAP stores world-to-camera in OpenCV axes: identity rotation and t = (0, 0, 5) is a camera at
    (0, 0, -5) looking along +Z; its depth bounds come from the points it sees."""
    (tmp_path / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    from neuralfields.media import save_png
    save_png(tmp_path / "images" / "a.png", np.zeros((6, 8, 3)))
    (tmp_path / "sparse" / "0" / "cameras.txt").write_text("# comment\n7 OPENCV 8 6 10 11 4.5 3 0.1 0 0 0\n")
    (tmp_path / "sparse" / "0" / "images.txt").write_text("# comment\n1 1 0 0 0 0 0 5 7 a.png\n1 2 1 3 4 2\n")
    (tmp_path / "sparse" / "0" / "points3D.txt").write_text("1 0 0 1 0 0 0 0\n2 0 0 3 0 0 0 0\n")
    capture = read_colmap_capture(tmp_path)
    c2w = capture.camtoworlds[0]
    np.testing.assert_allclose(c2w[:3, 3], [0, 0, -5])
    np.testing.assert_allclose(-c2w[:3, 2], [0, 0, 1])  # OpenGL: the camera looks down its -Z
    np.testing.assert_allclose(c2w[:3, 1], [0, -1, 0])  # OpenCV's y is down, OpenGL's up
    np.testing.assert_allclose(capture.intrinsics[0], [10, 11, 4.5, 3])
    np.testing.assert_allclose(capture.distortion[0], [0.1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(capture.bounds[0], [6.002, 7.998])  # percentiles 0.1 / 99.9 of depths 6 and 8


def test_quaternions_round_trip():
    rng = np.random.default_rng(0)
    rotations = [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.eye(3)]
    for _ in range(20):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        rotations.append(q * np.sign(np.linalg.det(q)))
    for rotation in rotations:
        np.testing.assert_allclose(qvec_to_rotation(rotation_to_qvec(rotation)), rotation, atol=1e-12)


def test_forward_facing_capture_still_takes_the_ndc_path(tiny_llff_scene):
    views = load_views(tiny_llff_scene, "train")
    assert views.kind == "forward" and views.ndc and (views.near, views.far) == (0.0, 1.0)
    assert views.spread_deg < 30


def test_scene_kind_overrides_the_measurement(circling_capture, tiny_llff_scene):
    forced = load_views(circling_capture.llff, "test", scene_kind="forward")
    assert forced.kind == "forward" and forced.ndc
    layout = scene_layout(read_llff_capture(circling_capture.llff), "forward")
    assert "but the scene kind is set to forward" in layout.describe() and "NDC" in layout.describe()
    assert "set to" not in scene_layout(read_llff_capture(circling_capture.llff), "circling").describe()
    assert "parallel" in one_line_error(load_views, tiny_llff_scene, "test", scene_kind="circling")
    assert "scene kind must be one of auto, forward, circling" in one_line_error(
        load_views, tiny_llff_scene, "test", scene_kind="inward")
    assert "needs depth bounds" in one_line_error(load_views, circling_capture.nerfstudio, "test", scene_kind="forward")


def test_view_spread_and_detection():
    eye = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [-4.0, 0, 0], [0, -4.0, 0]])
    around = look_at(eye, torch.zeros(3)).numpy()
    assert view_spread_deg(around) == 180.0 and detect_scene_kind(around)[0] == "circling"
    tilted = look_at(torch.tensor([[0.0, -4.0, 0.5], [0.4, -4.0, 0.0]]), torch.zeros(3)).numpy()
    kind, spread = detect_scene_kind(tilted)
    assert kind == "forward" and 0 < spread < 10


def test_spherify_is_invariant_to_the_capture_world():
    eye = torch.tensor([[3.0, 0, 1], [0, 3.0, 2], [-3.0, 0, 1], [0, -3.0, 0.5], [2.0, 2.0, 1.5]])
    poses = look_at(eye, torch.tensor([0.0, 0.0, 0.3])).double().numpy()
    moved = np.array(poses)
    rotation = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    moved[:, :3, :3] = rotation @ poses[:, :3, :3]
    moved[:, :3, 3] = 7.0 * poses[:, :3, 3] @ rotation.T + [1.0, 2.0, 3.0]
    np.testing.assert_allclose(spherify(moved)[0], spherify(poses)[0], atol=1e-9)
    assert spherify(moved)[1] == pytest.approx(spherify(poses)[1] / 7.0)


def test_crop_downscale_centres_the_crop():
    pixels = np.arange(11 * 13, dtype=np.float32).reshape(11, 13, 1)
    small, (left, top) = crop_downscale(pixels, 4)
    assert small.shape == (2, 3, 1) and (left, top) == (0, 1)
    assert small[0, 0, 0] == pixels[1:5, 0:4].mean()


def test_resampling_onto_a_centred_pinhole():
    rng = np.random.default_rng(0)
    pixels = rng.random((10, 12, 3)).astype(np.float32)
    no_distortion = np.zeros(6)
    same = resample_to_pinhole(pixels, np.array([20.0, 20.0, 6.0, 5.0]), no_distortion, 10, 12, 20.0)
    np.testing.assert_allclose(same, pixels, atol=1e-6)
    shifted = resample_to_pinhole(pixels, np.array([20.0, 20.0, 7.0, 5.0]), no_distortion, 10, 12, 20.0)
    np.testing.assert_allclose(shifted[:, :-1], pixels[:, 1:], atol=1e-6)  # principal point one pixel right
    x, y = distort(np.array([0.3]), np.array([-0.2]), np.array([0.1, 0.01, 0.0, 0.0, 0.001, 0.002]))
    r2 = 0.13
    assert x[0] == pytest.approx(0.3 * (1 + 0.1 * r2 + 0.01 * r2**2) + 2 * 0.001 * 0.3 * -0.2 + 0.002 * (r2 + 2 * 0.09))
    assert y[0] == pytest.approx(-0.2 * (1 + 0.1 * r2 + 0.01 * r2**2) + 0.001 * (r2 + 2 * 0.04) + 2 * 0.002 * 0.3 * -0.2)


def test_nerfstudio_distortion_and_per_frame_intrinsics_resample(circling_capture, tmp_path):
    """A frame with its own intrinsics (an off-centre principal point, fx != fy, distortion) is
    resampled onto the shared centred pinhole; the others are untouched."""
    folder = tmp_path / "ns"
    shutil.copytree(circling_capture.nerfstudio, folder)
    meta = json.loads((folder / "transforms.json").read_text())
    meta["frames"][1].update({"cx": 12.5, "fl_y": meta["fl_x"] * 1.01, "k1": 0.02})
    (folder / "transforms.json").write_text(json.dumps(meta))
    original = load_views(circling_capture.nerfstudio, "train")
    edited = load_views(folder, "train")
    torch.testing.assert_close(edited.images[1:], original.images[1:])
    difference = (edited.images[0] - original.images[0]).abs()
    assert 0.0 < difference.mean() < 0.1
    assert read_nerfstudio_capture(folder).intrinsics[1, 2] == 12.5


# ----------------------------------------------------------------------------- malformed inputs, one line each


def test_wrong_column_count_in_poses_bounds(circling_capture, tmp_path):
    folder = tmp_path / "llff"
    shutil.copytree(circling_capture.llff, folder)
    np.save(folder / "poses_bounds.npy", np.load(folder / "poses_bounds.npy")[:, :15])
    assert "has shape (16, 15); expected (N, 17)" in one_line_error(load_views, folder, "train")


def test_frame_pointing_to_a_missing_image(circling_capture, tmp_path):
    folder = tmp_path / "ns"
    shutil.copytree(circling_capture.nerfstudio, folder)
    (folder / "images" / "frame_00003.png").unlink()
    message = one_line_error(load_views, folder, "train")
    assert "frame 2 points to images/frame_00003.png, which is not a file" in message
    colmap = tmp_path / "colmap"
    shutil.copytree(circling_capture.colmap, colmap)
    (colmap / "images" / "IMG_0005.png").unlink()
    assert "lists IMG_0005.png, which is not a file" in one_line_error(load_views, colmap, "train")


def test_unknown_camera_models(circling_capture, tmp_path):
    folder = tmp_path / "ns"
    shutil.copytree(circling_capture.nerfstudio, folder)
    meta = json.loads((folder / "transforms.json").read_text())
    meta["camera_model"] = "OPENCV_FISHEYE"
    (folder / "transforms.json").write_text(json.dumps(meta))
    assert "unknown camera model 'OPENCV_FISHEYE'" in one_line_error(load_views, folder, "train")

    colmap = tmp_path / "colmap"
    shutil.copytree(circling_capture.colmap, colmap)
    cameras = colmap / "sparse" / "0" / "cameras.txt"
    cameras.write_text(cameras.read_text().replace("PINHOLE", "THIN_PRISM_FISHEYE"))
    assert "unknown camera model THIN_PRISM_FISHEYE; supported: SIMPLE_PINHOLE" in one_line_error(
        load_views, colmap, "train")


def test_malformed_colmap_files(circling_capture, tmp_path):
    colmap = tmp_path / "colmap"
    shutil.copytree(circling_capture.colmap, colmap)
    save_colmap_model(tmp_path / "bin", np.tile(np.eye(4), (1, 1, 1)), np.zeros((1, 4, 4, 3)), 5.0, binary=True)
    model = colmap / "sparse" / "0"
    data = (tmp_path / "bin" / "sparse" / "0" / "cameras.bin").read_bytes()
    (model / "cameras.bin").write_bytes(data[:-5])
    (model / "images.bin").write_bytes((tmp_path / "bin" / "sparse" / "0" / "images.bin").read_bytes())
    assert "cameras.bin ends early" in one_line_error(load_views, colmap, "train")
    for name in ("cameras.bin", "images.bin"):
        (model / name).unlink()
    images = model / "images.txt"
    images.write_text(images.read_text().replace(" 1 IMG_0002.png", " 9 IMG_0002.png"))
    assert "image IMG_0002.png uses camera 9, which cameras.txt does not define" in one_line_error(
        load_views, colmap, "train")
    images.write_text("1 0.5 0.5\n\n")
    assert "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME" in one_line_error(load_views, colmap, "train")


def test_llff_photos_of_a_size_the_factor_does_not_divide_are_cropped(tmp_path):
    """Real photos (e.g. 1140x855 at 1/8) need not be multiples of the downscale factor."""
    poses = look_at(torch.tensor([[0.0, -4.0, 0.0], [0.3, -4.0, 0.2]]), torch.zeros(3)).numpy()
    save_llff_scene(tmp_path / "odd", poses, np.tile([2.0, 6.0], (2, 1)), np.full((2, 19, 27, 3), 0.5), 30.0)
    views = load_views(tmp_path / "odd", "all", downscale=4)
    assert (views.height, views.width) == (4, 6) and views.focal == pytest.approx(7.5)
    assert math.isclose(float(views.images.mean()), 128 / 255, abs_tol=1e-6)  # 0.5 as an 8-bit PNG
