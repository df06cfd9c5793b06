"""The ViT task: model shapes and sizes, offline digits, training through the shared loop
(run folder, resume, metrics), bad input, and two-process DDP training under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from neuralfields.config import defaults, overlay
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.counting import parameter_report
from neuralfields.runs import open_run
from neuralfields.storage import latest_checkpoint
from neuralfields.training.vit import ViTConfig, build_model, classify, train_vit
from neuralfields.vit import ViT, load_digits, parse_digits, shift_images

ROOT = Path(__file__).resolve().parents[1]


def vit_config(tmp_path: Path, **values) -> ViTConfig:
    settings = {"spec": "sine:4", "dim": 32, "depth": 2, "heads": 2, "steps": 120, "time_budget_s": None,
                "batch_size": 64, "lr": 3e-3, "validate_every": 0, "checkpoint_every": 60, "device": "cpu",
                "output_root": str(tmp_path / "outputs")}
    return overlay(defaults(ViTConfig), {**settings, **values}, "test")


@pytest.mark.parametrize("spec", ["dense", "lowrank:2", "sine:2@50"])
def test_vit_forward_shapes_and_sizes(spec):
    model = ViT(spec, num_classes=5, dim=32, depth=2, heads=4)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 5)
    assert model(torch.randn(2, 28, 28)).shape == (2, 5)  # a channel-less batch
    assert model.patches(torch.randn(2, 1, 28, 28)).shape == (2, 16, 49)
    report = parameter_report(model)
    dense = parameter_report(ViT("dense", num_classes=5, dim=32, depth=2, heads=4))["parameters"]
    assert report["dense_parameters"] == dense
    assert (report["percent_of_dense"] < 60) == (spec != "dense")  # the spec builds attention and MLP layers
    with pytest.raises(ValueError, match="rank 40 is larger than the layer width 32"):
        ViT("sine:40", dim=32)


def test_digits_are_offline_split_per_digit_and_relabelled():
    data = load_digits("5-9", test_fraction=0.2, seed=0)
    assert data.digits == (5, 6, 7, 8, 9)
    assert data.train_images.shape == (2000, 1, 28, 28) and data.test_images.shape == (500, 1, 28, 28)
    assert torch.equal(torch.bincount(data.test_labels), torch.full((5,), 100))
    everything = load_digits("0-9")  # a subset keeps the same split: its test images are among all ten's
    assert {tuple(row) for row in data.test_images[:5].flatten(1).tolist()} <= \
        {tuple(row) for row in everything.test_images.flatten(1).tolist()}
    assert parse_digits("1,3,7") == (1, 3, 7)
    for bad in ("3", "0-12", "x"):
        with pytest.raises(NeuralFieldsError, match="digits must"):
            parse_digits(bad)
    images = data.train_images[:4]
    shifted = shift_images(images, 2, torch.Generator().manual_seed(0), data.background)
    assert shifted.shape == images.shape and not torch.equal(shifted, images)
    assert torch.allclose(shifted.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)), rtol=0.2)  # moved, not changed


def test_short_vit_run_learns_writes_its_folder_and_resumes(tmp_path):
    config = vit_config(tmp_path)
    untrained = classify(build_model(config), load_digits().test_images, load_digits().test_labels)["accuracy"]
    run_dir, metrics = train_vit(config, progress=False)
    assert run_dir.parent == tmp_path / "outputs" / "vit" / "mnist-0-9" / "sine-k4"
    assert metrics["steps"] == 120 and metrics["test_images"] == 1000
    assert metrics["test_accuracy"] > max(0.3, untrained + 0.2)  # chance is 0.1
    assert metrics["parameters"] < metrics["dense_parameters"] and 0 < metrics["percent_of_dense"] < 100
    assert set(metrics["test_accuracy_per_digit"]) == {str(d) for d in range(10)}
    assert json.loads((run_dir / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    run = open_run(run_dir)
    assert run.task == "vit" and str(run.config.spec) == "sine:4@100"
    assert classify(run.load_model(), load_digits().test_images, load_digits().test_labels)["accuracy"] == \
        pytest.approx(metrics["test_accuracy"])

    _, resumed = train_vit({"steps": 150}, resume=run_dir, progress=False)
    assert resumed["steps"] == 150 and latest_checkpoint(run_dir).name == "step_0000150"


@pytest.mark.parametrize(("values", "message"), [
    ({"digits": "7"}, "at least two digits"),
    ({"patch_size": 5}, "patch_size 5 does not divide"),
    ({"heads": 3}, "dim 32 is not divisible by 3 heads"),
    ({"spec": "lowrank:40"}, "rank 40 is larger than the layer width 32"),
])
def test_bad_vit_config_is_one_line(tmp_path, values, message):
    with pytest.raises(NeuralFieldsError, match=message):
        vit_config(tmp_path, **values)


def test_torchrun_two_processes_end_with_identical_weights(tmp_path):
    """Two CPU processes (gloo) for a few steps: the ranks agree, and DDP with each rank on half the
    batch matches one process on the whole batch."""
    flags = ["--spec", "sine:2", "--steps", "6", "--batch-size", "16", "--dim", "16", "--depth", "1",
             "--device", "cpu", "--threads", "1", "--set", "heads=2", "--set", "validate_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "scripts" / "train_vit.py"), *flags, "--output-root", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "ddp" / "vit" / "mnist-0-9" / "sine-k2").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert metrics["distributed"] == {"world_size": 2, "backend": "gloo", "identical_weights": True}

    single = overlay(defaults(ViTConfig), {"spec": "sine:2", "steps": 6, "time_budget_s": None, "batch_size": 16,
                                           "dim": 16, "depth": 1, "heads": 2, "validate_every": 0, "device": "cpu",
                                           "output_root": str(tmp_path / "single")}, "test")
    single_dir, _ = train_vit(single, progress=False)
    ddp_weights = load_file(latest_checkpoint(run_dir) / "model.safetensors")
    single_weights = load_file(latest_checkpoint(single_dir) / "model.safetensors")
    difference = torch.cat([(ddp_weights[name] - tensor).abs().flatten() for name, tensor in single_weights.items()])
    print(f"DDP vs one process: max {difference.max():.2e}, mean {difference.mean():.2e}")
    # Adam turns rounding-level gradient differences on near-zero gradients into steps of up to
    # lr (1e-3); a wrong split of the batch moves most weights by ~lr per step
    assert difference.max() < 1e-3 and difference.mean() < 1e-5


@pytest.mark.parametrize(("flags", "message"), [
    (["--digits", "3"], "error: digits must name at least two digits in 0..9, got '3'"),
    (["--spec", "sine:4@0"], "error: --spec: omega must be a finite number > 0"),
    (["--spec", "sine:99"], "error: rank 99 is larger than the layer width 64 allows"),
])
def test_train_vit_script_bad_input_is_one_line(run_script, tmp_path, flags, message):
    result = run_script("train_vit.py", *flags, "--steps", "1", "--output-root", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not (tmp_path / "vit").exists()  # nothing was written
