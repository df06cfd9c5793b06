"""Occupancy training end to end on small shapes: quality, resume, NaN stop, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from neuralfields.config import defaults, overlay
from neuralfields.errors import NeuralFieldsError, NonFiniteLossError
from neuralfields.fields.occupancy import OccupancyField
from neuralfields.layers.counting import parameter_report
from neuralfields.runs import open_run
from neuralfields.storage import latest_checkpoint
from neuralfields.training.occupancy import OccupancyConfig, OccupancyTask, train_occupancy


def occupancy_config(**values) -> OccupancyConfig:
    return overlay(defaults(OccupancyConfig), values, "test")


@pytest.fixture(scope="module")
def trained_run(tiny_occupancy_config, tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    return train_occupancy(tiny_occupancy_config(), run_dir=run_dir, progress=False)


def test_reference_model_at_rank_one_is_two_percent_of_dense():
    report = parameter_report(OccupancyField("sine:1@100"))
    assert report["dense_parameters"] == 3 * 256 + 256 + 2 * (256 * 256 + 256) + 257
    assert report["percent_of_dense"] == pytest.approx(2.12, abs=0.01)


def test_short_run_learns_a_sphere(trained_run):
    run_dir, metrics = trained_run
    assert metrics["iou_uniform"] >= 0.9
    assert metrics["iou_grid"] >= 0.9 and metrics["iou_grid_resolution"] == 32
    assert metrics["chamfer_l1"] < 0.02
    assert metrics["steps"] == 200
    assert json.loads((run_dir / "metrics.json").read_text())["iou_uniform"] == metrics["iou_uniform"]


def test_extracted_mesh_is_in_original_coordinates(trained_run):
    import trimesh

    mesh = trimesh.load(trained_run[0] / "mesh.ply", force="mesh")
    expected = np.array([[3.0, -2.0, -1.0], [7.0, 2.0, 3.0]])
    assert mesh.bounds == pytest.approx(expected, abs=0.15)


def test_resume_continues_from_latest_checkpoint(trained_run):
    run_dir, _ = trained_run
    _, metrics = train_occupancy({"steps": 230}, resume=run_dir, progress=False)
    assert metrics["steps"] == 230 and open_run(run_dir).config.steps == 230
    assert latest_checkpoint(run_dir).name == "step_0000230"
    assert metrics["iou_uniform"] >= 0.9


def test_nan_loss_stops_with_one_line(tiny_occupancy_config, tmp_path):
    config = tiny_occupancy_config(lr=1e30, steps=20)
    with pytest.raises(NonFiniteLossError, match=r"^loss became (nan|inf) at step \d+; no checkpoint"):
        train_occupancy(config, run_dir=tmp_path / "run", progress=False)


def test_time_budget_stops_training(tiny_occupancy_config, tmp_path):
    config = tiny_occupancy_config(steps=None, time_budget_s=1.0)
    _, metrics = train_occupancy(config, run_dir=tmp_path / "run", progress=False)
    assert 0 < metrics["steps"] and 1.0 <= metrics["train_seconds"] < 3.0


def test_cpu_budget_clock_counts_compute_not_waiting(tiny_occupancy_config, tmp_path, monkeypatch):
    """With budget_clock cpu, time the process spends waiting (here: sleeping after every step, as
    on a CPU shared with other jobs) is not charged to the budget."""
    pause = 0.02
    step = OccupancyTask.train_step

    def slow_step(self, *args):
        result = step(self, *args)
        time.sleep(pause)
        return result

    monkeypatch.setattr(OccupancyTask, "train_step", slow_step)
    config = tiny_occupancy_config(steps=None, time_budget_s=0.3, budget_clock="cpu",
                         threads=1)
    _, metrics = train_occupancy(config, run_dir=tmp_path / "run", progress=False)
    assert metrics["budget_clock"] == "cpu" and 0.3 <= metrics["train_seconds"] < 1.0
    assert metrics["steps"] * pause > 2 * 0.3, metrics["steps"]  # a wall-clock budget ends after 15 steps


def test_bad_config_values_are_named():
    with pytest.raises(NeuralFieldsError, match="test: unknown config key 'step'"):
        occupancy_config(step=3)
    with pytest.raises(NeuralFieldsError, match="test: spec: malformed layer spec"):
        occupancy_config(spec="sine")
    with pytest.raises(NeuralFieldsError, match=r"test: batch_size must be >= 1, got 0"):
        occupancy_config(batch_size=0)
    with pytest.raises(NeuralFieldsError, match=r"test: eval_grid_resolution must be a whole number, got 'x'"):
        occupancy_config(eval_grid_resolution="x")
    with pytest.raises(NeuralFieldsError, match=r"^rank 300 is larger than the layer width 256 allows$"):
        occupancy_config(spec="sine:300")
    assert str(occupancy_config(spec="sine:2").spec) == "sine:2@100"


def test_script_reports_missing_mesh_in_one_line(tmp_path, run_script):
    code, _, stderr = run_script("train_occupancy.py", "--mesh", str(tmp_path / "nope.obj"), "--output-root", str(tmp_path))
    assert code == 2
    assert stderr.strip() == f"error: mesh file not found: {tmp_path / 'nope.obj'}"
    assert list(tmp_path.iterdir()) == []  # bad input makes no run folder


def test_script_rejects_bad_rank(tmp_path, run_script):
    code, _, stderr = run_script("train_occupancy.py", "--rank", "0", "--output-root", str(tmp_path))
    assert code == 2
    assert "rank must be an integer >= 1, got 0" in stderr


def test_script_trains_default_shape_into_run_folder(tmp_path, run_script):
    config_file = tmp_path / "small.yaml"
    config_file.write_text(
        "num_uniform: 5000\nnum_surface: 5000\n"
        "eval_uniform_points: 5000\neval_grid_resolution: 24\neval_surface_samples: 2000\n"
        f"cache_dir: {tmp_path / 'cache'}\n"
    )
    code, _, stderr = run_script("train_occupancy.py", "--preset", str(config_file), "--kind", "lowrank", "--rank", "2",
                                 "--steps", "3", "--batch-size", "256", "--threads", "1", "--output-root", str(tmp_path))
    assert code == 0, stderr
    (run_dir,) = (tmp_path / "occupancy" / "default-shape" / "lowrank-k2").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["spec"] == "lowrank:2" and metrics["steps"] == 3
    assert {"iou_uniform", "iou_grid", "chamfer_l1", "normal_consistency", "percent_of_dense"} <= set(metrics)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints").is_dir()


def test_script_refuses_to_resume_a_run_of_another_kind(tmp_path, run_script):
    (tmp_path / "config.yaml").write_text("scene: lego\n")
    code, _, stderr = run_script("train_occupancy.py", "--resume", str(tmp_path))
    assert code == 2
    assert stderr.strip() == f"error: {tmp_path} is a run of task 'nerf', not 'occupancy'"
