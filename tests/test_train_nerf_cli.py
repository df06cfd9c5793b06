"""scripts/train_nerf.py end to end: a tiny run succeeds; bad inputs give one line and exit 2."""

import json

import pytest
import yaml

from test_nerf_training import TINY

@pytest.fixture
def tiny_preset(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({key: value for key, value in TINY.items() if key not in ("spec", "device")}))
    return path


def test_tiny_run_writes_metrics(tiny_scene, tiny_preset, tmp_path, run_script):
    result = run_script("train_nerf.py", "--scene", str(tiny_scene), "--preset", str(tiny_preset), "--rank", "2", "--omega", "30",
                        "--steps", "4", "--output-root", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "device: cpu; precision: float32; sampling: pure-torch occupancy grid 16^3" in result.stdout
    (metrics_path,) = (tmp_path / "out" / "demo" / "sine-k2").glob("*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["spec"] == "sine:2@30" and metrics["steps"] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kind", "tucker"], "argument --kind: invalid choice: 'tucker'"),
        (["--rank", "0"], "rank must be an integer >= 1, got 0"),
        (["--omega", "-3"], "omega must be a finite number > 0, got -3"),
    ],
)
def test_bad_layer_arguments(args, message, run_script):
    result = run_script("train_nerf.py", "--scene", "demo", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_rank_larger_than_width(tiny_scene, tmp_path, run_script):
    result = run_script("train_nerf.py", "--scene", str(tiny_scene), "--preset", "cpu", "--rank", "300", "--output-root", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: rank 300 is larger than the layer width 128 allows"


def test_unwritable_output_folder(tiny_scene, tmp_path, run_script):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_script("train_nerf.py", "--scene", str(tiny_scene), "--output-root", str(blocker / "runs"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: output folder {blocker / 'runs'}") and "not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_scene_folder(tmp_path, run_script):
    result = run_script("train_nerf.py", "--scene", "lego", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: scene folder not found: {tmp_path / 'lego'}")
