"""Run folders: atomic checkpoints, the one-writer lock, the NaN stop, the run API, and run
folders written before the task contract (tests/fixtures/old_*_run)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from neuralfields.errors import NeuralFieldsError, NonFiniteLossError
from neuralfields.layers.spec import LayerSpec
from neuralfields.meshing.shapes import Sphere
from neuralfields.runs import open_run
from neuralfields.storage import (
    RunLock, create_run_dir, latest_checkpoint, load_checkpoint, load_config, read_yaml_mapping, save_checkpoint,
    save_config, write_json,
)
from neuralfields.training.loop import check_finite
from neuralfields.config import defaults, overlay
from neuralfields.training.nerf import NerfConfig, train_nerf
from neuralfields.training.nerf import build_model as build_nerf_model
from neuralfields.training.occupancy import build_model as build_occupancy_model
from neuralfields.training.occupancy import train_occupancy

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def small_model():
    return nn.Sequential(LayerSpec.parse("sine:1@30").build(8, 8), nn.ReLU(), nn.Linear(8, 2))


def test_checkpoint_round_trip_with_optimizer(tmp_path):
    torch.manual_seed(0)
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, 7, model, optimizer, extra={"psnr": 21.5})

    restored = small_model()
    restored_opt = torch.optim.Adam(restored.parameters(), lr=1e-2)
    step, extra = load_checkpoint(latest_checkpoint(tmp_path), restored, restored_opt)
    assert (step, extra) == (7, {"psnr": 21.5})
    x = torch.randn(3, 8)
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    assert restored_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_weights_load_without_the_training_state(tmp_path):
    model = small_model()
    path = save_checkpoint(tmp_path, 12, model, torch.optim.Adam(model.parameters()))
    (path / "state.pt").unlink()
    restored = small_model()
    assert load_checkpoint(path, restored) == (12, {})
    x = torch.randn(3, 8)
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    with pytest.raises(NeuralFieldsError, match="cannot read checkpoint"):
        load_checkpoint(path, restored, torch.optim.Adam(restored.parameters()))


def test_checkpoints_are_pruned_and_leave_no_temporaries(tmp_path):
    model = small_model()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, model, keep=2)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step_0000020", "step_0000030"]
    assert latest_checkpoint(tmp_path).name == "step_0000030"


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    model = small_model()
    save_checkpoint(tmp_path, 1, model)
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, model)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step_0000001"]


def test_nan_loss_names_the_kept_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 5, small_model())
    check_finite(0.3, 6, tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 6; last good checkpoint kept in .*step_0000005"):
        check_finite(float("nan"), 6, tmp_path)


def test_run_dir_config_and_json(tmp_path):
    run_dir = create_run_dir(tmp_path / "outputs", "lego", "sine-k1")
    second = create_run_dir(tmp_path / "outputs", "lego", "sine-k1")
    assert run_dir != second and run_dir.parent == tmp_path / "outputs" / "lego" / "sine-k1"
    save_config(run_dir, {"spec": "sine:1@800", "steps": 100})
    assert load_config(run_dir) == {"spec": "sine:1@800", "steps": 100}
    write_json(run_dir / "metrics.json", {"psnr": 30.0})
    assert (run_dir / "metrics.json").read_text().strip().startswith("{")
    with pytest.raises(NeuralFieldsError, match="is not a run folder: config.yaml is missing"):
        load_config(tmp_path)


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NeuralFieldsError, match="output folder .* is not writable"):
        create_run_dir(blocker, "lego")


def test_yaml_mapping_errors(tmp_path):
    with pytest.raises(NeuralFieldsError, match="config file not found"):
        read_yaml_mapping(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(NeuralFieldsError, match="bad.yaml is not valid YAML"):
        read_yaml_mapping(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(NeuralFieldsError, match="must hold a mapping"):
        read_yaml_mapping(tmp_path / "list.yaml")


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_one(tmp_path, capsys):
    with RunLock(tmp_path):
        with pytest.raises(NeuralFieldsError, match=rf"{tmp_path} is being trained by pid {os.getpid()} on "):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    (tmp_path / ".lock").write_text(f"{host} {finished.stdout.strip()}\n")  # a pid that no longer runs
    with RunLock(tmp_path):
        assert "taking over the stale lock" in capsys.readouterr().out


def test_run_api_refuses_folders_that_are_not_runs(tmp_path):
    with pytest.raises(NeuralFieldsError, match="is not a run folder: config.yaml is missing"):
        open_run(tmp_path)
    (tmp_path / "config.yaml").write_text("task: tetris\n")
    with pytest.raises(NeuralFieldsError, match=r"is a run of unknown task 'tetris' \(known: nerf, occupancy, vit\)"):
        open_run(tmp_path)
    (tmp_path / "config.yaml").write_text("task: occupancy\nwidth: many\n")
    with pytest.raises(NeuralFieldsError, match=r"config.yaml: width must be a whole number, got 'many'"):
        open_run(tmp_path)


def old_run(tmp_path: Path, name: str, **changes) -> Path:
    """A copy of a pre-contract run folder's config.yaml with `changes` (paths of this machine)."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    values = yaml.safe_load((FIXTURES / name / "config.yaml").read_text())
    values.update(changes)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return run_dir


def test_old_nerf_run_folder_loads_resumes_and_exports(tiny_scene, tmp_path, run_script):
    run_dir = old_run(tmp_path, "old_nerf_run", scene=str(tiny_scene), output_root=str(tmp_path))
    run = open_run(run_dir)
    assert run.task == "nerf" and run.config.checkpoint_every == 3 and run.config.threads == 1
    assert run.config.lr_final_ratio == pytest.approx(0.1) and str(run.config.spec) == "sine:1@100"
    with pytest.raises(NeuralFieldsError, match="holds no checkpoint"):
        run.load_model()
    torch.manual_seed(0)  # an old checkpoint: the same state-dict keys (field.*, estimator.*) as today's
    save_checkpoint(run_dir, 3, build_nerf_model(run.config), extra={"num_rays": 256, "train_seconds": 1.0})
    _, metrics = train_nerf({"steps": 6}, resume=run_dir, progress=False)
    assert metrics["steps"] == 6 and latest_checkpoint(run_dir).name == "step_0000006"
    assert load_config(run_dir)["task"] == "nerf"  # rewritten in today's layout
    with torch.no_grad():
        level = open_run(run_dir).load_model().field.query_density(torch.rand(4096, 3) * 2 - 1).median().item()
    result = run_script("export_mesh.py", str(run_dir), "--resolution", "16", "--level", f"{level:.6g}")
    assert result.returncode == 0, result.stderr
    assert (run_dir / "mesh_16.ply").is_file()


def test_old_occupancy_run_folder_loads_resumes_and_exports(tmp_path, run_script):
    mesh_file = tmp_path / "ball.ply"
    Sphere(0.4).mesh(3).export(mesh_file)
    run_dir = old_run(tmp_path, "old_occupancy_run", mesh=str(mesh_file), cache_dir=str(tmp_path / "cache"))
    run = open_run(run_dir)
    assert run.task == "occupancy" and run.config.width == 32 and run.config.eval_grid_resolution == 16
    assert run.config.time_budget_s is None and run.config.sample_seed == 0
    torch.manual_seed(0)
    save_checkpoint(run_dir, 3, build_occupancy_model(run.config), extra={"train_seconds": 1.0})
    _, metrics = train_occupancy({"steps": 6}, resume=run_dir, progress=False)
    assert metrics["steps"] == 6 and metrics["iou_grid_resolution"] == 16
    result = run_script("export_mesh.py", str(run_dir), "--resolution", "16")
    assert result.returncode == 0, result.stderr


def test_bad_input_creates_no_run_folder(tmp_path):
    config = overlay(defaults(NerfConfig), {"scene": str(tmp_path / "nowhere"), "output_root": str(tmp_path / "out"),
                                            "device": "cpu"}, "test")
    with pytest.raises(NeuralFieldsError, match="scene folder not found"):
        train_nerf(config, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_run_killed_after_a_checkpoint_resumes(tmp_path):
    """SIGKILL leaves the lock and the last checkpoint; --resume takes the stale lock over and goes on."""
    cache = tmp_path / "cache"
    args = [sys.executable, str(REPO / "scripts" / "train_occupancy.py"), "--steps", "100000", "--threads", "1",
            "--output-root", str(tmp_path / "out"), "--set", "num_uniform=2000", "--set", "num_surface=2000",
            "--set", "width=16", "--set", "batch_size=64", "--set", "checkpoint_every=20",
            "--set", f"cache_dir={cache}", "--set", "eval_uniform_points=1000", "--set", "eval_grid_resolution=12",
            "--set", "eval_surface_samples=500"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    run_dir = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "out").glob("occupancy/*/*/*/checkpoints/step_*"))
        if found:
            run_dir = found[0].parents[1]
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert run_dir is not None, "no checkpoint within 60 s"
    assert (run_dir / ".lock").exists()
    killed_at = int(latest_checkpoint(run_dir).name.removeprefix("step_"))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "train_occupancy.py"), "--resume", str(run_dir),
                             "--steps", str(killed_at + 10)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "taking over the stale lock" in result.stdout
    assert latest_checkpoint(run_dir).name == f"step_{killed_at + 10:07d}"
    assert not (run_dir / ".lock").exists()
    shutil.rmtree(cache, ignore_errors=True)
