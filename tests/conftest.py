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
from neuralfields.data.llff import save_llff_scene

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
