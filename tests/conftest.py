"""Suite-wide test settings and helpers."""

import runpy
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from neuralfields.data.demo_scene import ensure_demo_scene

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
