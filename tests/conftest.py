"""Suite-wide test settings and helpers."""

import math
import runpy
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from neuralfields.data.demo_scene import (
    CAMERA_ANGLE_X, build_demo_parts, ensure_demo_scene, raycasting_scene, render_view,
)
from neuralfields.config import defaults, overlay
from neuralfields.data.llff import save_llff_scene
from neuralfields.meshing.shapes import Sphere
from neuralfields.training.occupancy import OccupancyConfig

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The test networks are tiny: one torch thread runs them fastest, and on a shared 2-core
    machine OpenMP threads stall on small matmuls (measured 6-50x slower with 2 threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ScriptResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_script(capsys):
    """Run scripts/<name> in this process as `python scripts/<name> ARGS` would (same exit code,
    stdout and stderr), far faster than a subprocess."""

    def run(name: str, *args: str) -> ScriptResult:
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", [name, *args])
            with pytest.raises(SystemExit) as exited:
                runpy.run_path(str(SCRIPTS / name), run_name="__main__")
        output = capsys.readouterr()
        return ScriptResult(exited.value.code or 0, output.out, output.err)

    return run


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory):
    """A 24x24 demo scene (12 train, 2 val, 2 test views) shared by the NeRF tests."""
    return ensure_demo_scene(tmp_path_factory.mktemp("scene") / "demo", resolution=24, num_train=12, num_val=2,
                             num_test=2)


@pytest.fixture(scope="session")
def tiny_llff_scene(tmp_path_factory):
    """A forward-facing LLFF scene of the demo object: 16 photos (24x24, white behind the object)
    from cameras spread over a 1x1 patch at z = 4, all looking down -Z; every 8th is held out."""
    parts = build_demo_parts()
    scene = raycasting_scene([part.mesh for part in parts])
    rng = np.random.default_rng(0)
    poses = np.tile(np.eye(4), (16, 1, 1))
    poses[:, :2, 3] = rng.uniform(-0.5, 0.5, (16, 2))
    poses[:, 2, 3] = 4.0
    size, focal = 24, 12.0 / math.tan(0.5 * CAMERA_ANGLE_X)
    rgba = np.stack([render_view(scene, parts, torch.from_numpy(pose).float(), size, size, focal) for pose in poses])
    images = rgba[..., :3] + (1.0 - rgba[..., 3:])  # premultiplied colour over white
    bounds = np.tile([3.0, 5.0], (16, 1))
    return save_llff_scene(tmp_path_factory.mktemp("llff") / "demo_llff", poses, bounds, images, focal)


class CirclingCapture(NamedTuple):
    """One synthetic circling capture written in three formats, and what it was made from."""

    llff: Path
    nerfstudio: Path
    colmap: Path
    camtoworlds: np.ndarray  # (N,4,4) OpenGL, in the demo object's world (object at the origin, Z up)
    capture_to_demo: np.ndarray  # (4,4) similarity taking the capture's world to the demo's
    focal: float


def random_similarity(seed: int, scale: float) -> np.ndarray:
    """A rotation, translation and uniform scale (4,4): the arbitrary world a capture's poses come in."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    transform = np.eye(4)
    transform[:3, :3] = scale * q
    transform[:3, 3] = rng.uniform(-3, 3, 3)
    return transform


@pytest.fixture(scope="session")
def circling_capture(tmp_path_factory):
    """The demo object photographed by 16 cameras around it (radius 4, elevations alternating 20 and
    40 degrees, even azimuths, 24x24, white behind the object), posed in an arbitrary world (rotated,
    moved, scaled 2.5x) and written as an LLFF folder, a nerfstudio folder and a COLMAP text model
    (with 3D points on the object). Every 8th photo is held out."""
    from neuralfields.data.colmap import save_colmap_model
    from neuralfields.data.nerfstudio import save_nerfstudio_scene
    from neuralfields.rendering.cameras import look_at

    parts = build_demo_parts()
    scene = raycasting_scene([part.mesh for part in parts])
    azimuth = np.arange(16) * (2 * math.pi / 16)
    elevation = np.radians(np.where(np.arange(16) % 2 == 0, 20.0, 40.0))
    eye = 4.0 * np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                          np.sin(elevation)], axis=1)
    camtoworlds = look_at(torch.from_numpy(eye).float(), torch.zeros(3)).double().numpy()
    size, focal = 24, 12.0 / math.tan(0.5 * CAMERA_ANGLE_X)
    rgba = np.stack([render_view(scene, parts, torch.from_numpy(pose).float(), size, size, focal)
                     for pose in camtoworlds])
    images = rgba[..., :3] + (1.0 - rgba[..., 3:])  # premultiplied colour over white
    demo_to_capture = random_similarity(3, 2.5)
    poses = demo_to_capture @ camtoworlds
    poses[:, :3, :3] /= 2.5  # rotations stay rotations; positions carry the scale
    points = np.asarray(build_demo_parts()[0].mesh.vertices[::7], dtype=np.float64)
    points = points @ demo_to_capture[:3, :3].T + demo_to_capture[:3, 3]
    root = tmp_path_factory.mktemp("circling")
    return CirclingCapture(
        llff=save_llff_scene(root / "llff", poses, np.tile([2.0 * 2.5, 6.0 * 2.5], (16, 1)), images, focal),
        nerfstudio=save_nerfstudio_scene(root / "nerfstudio", poses, images, focal),
        colmap=save_colmap_model(root / "colmap", poses, images, focal, points=points),
        camtoworlds=camtoworlds, capture_to_demo=np.linalg.inv(demo_to_capture), focal=focal,
    )


@pytest.fixture(scope="session")
def sphere_mesh(tmp_path_factory) -> Path:
    """A sphere of radius 2 centred at (5, 0, 1): normalisation must undo the offset and scale."""
    path = tmp_path_factory.mktemp("mesh") / "ball.ply"
    Sphere(2.0, (5.0, 0.0, 1.0)).mesh(4).export(path)
    return path


@pytest.fixture(scope="session")
def tiny_occupancy_config(sphere_mesh, tmp_path_factory):
    """Makes the occupancy config that learns `sphere_mesh` in 200 CPU steps (sine rank 1, width
    64), with any values changed; its labelled points are cached once for the session."""
    cache_dir = tmp_path_factory.mktemp("occupancy-cache")

    def make(**values) -> OccupancyConfig:
        return overlay(defaults(OccupancyConfig), {
            "mesh": str(sphere_mesh), "spec": "sine:1", "width": 64, "num_uniform": 20_000, "num_surface": 20_000,
            "steps": 200, "batch_size": 1024, "lr": 3e-3, "checkpoint_every": 100, "eval_uniform_points": 20_000,
            "eval_grid_resolution": 32, "eval_surface_samples": 5_000, "device": "cpu", "cache_dir": str(cache_dir),
            **values}, "test")

    return make
