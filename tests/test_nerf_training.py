"""NeRF training on a tiny demo scene (24x24, small model): learning, checkpoints, resume, NaN stop."""

import json

import pytest
import torch

from neuralfields import storage
from neuralfields.config import defaults, overlay
from neuralfields.data.blender import load_blender_split
from neuralfields.data.scenes import load_views
from neuralfields.device import autocast_dtype
from neuralfields.errors import NeuralFieldsError, NonFiniteLossError
from neuralfields.fields.radiance import RadianceField
from neuralfields.rendering.render import render_image
from neuralfields.runs import open_run
from neuralfields.training.loop import TrainingLoop
from neuralfields.training.nerf import NerfConfig, NerfTask, auto_preset, load_preset, render_settings, train_nerf

TINY = {
    "spec": "sine:1@30", "num_layers": 3, "width": 32, "skip_layer": 2, "color_width": 16, "xyz_freqs": 4,
    "dir_freqs": 2, "grid_resolution": 16, "grid_warmup_steps": 32, "render_step_size": 0.05,
    "target_samples": 4096, "init_rays": 256, "max_rays": 1024, "lr": 5e-3, "lr_final_ratio": 0.2, "adam_beta2": 0.99,
    "mixed_precision": False, "device": "cpu", "val_every": 10**6, "checkpoint_every": 5, "test_views": 2,
    "eval_chunk": 1024, "video_frames": 2, "video_fps": 2, "threads": 1,
}


def tiny_config(scene, tmp_path, **overrides):
    values = {**TINY, "scene": str(scene), "output_root": str(tmp_path / "out"), **overrides}
    return overlay(defaults(NerfConfig), values, "test")


def train_views_task(config, scene):
    return NerfTask(config, torch.device("cpu"), load_views(scene, "train"), scene_dir=scene)


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_short_training_raises_test_psnr(tiny_scene, tmp_path, mixed_precision):
    """In fp32 and in mixed precision (bf16 autocast where the CPU has native bf16 matmuls)."""
    config = tiny_config(tiny_scene, tmp_path, steps=150, mixed_precision=mixed_precision)
    task = train_views_task(config, tiny_scene)
    assert task.amp_dtype == (autocast_dtype(torch.device("cpu")) if mixed_precision else None)
    assert task.optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    test_views = load_blender_split(tiny_scene, "test")
    before = task.evaluate_views(test_views, progress=False)["psnr"]
    loop = TrainingLoop(task, tmp_path, progress=False)
    loop.run()
    after = task.evaluate_views(test_views, progress=False)
    assert loop.step == 150 and storage.latest_checkpoint(tmp_path).name == "step_0000150"
    assert after["psnr"] > before + 4.0, (before, after["psnr"])
    assert 0.0 < after["ssim"] <= 1.0 and len(after["per_view"]) == 2


def test_run_folder_save_load_render_and_resume(tiny_scene, tmp_path):
    run_dir, returned = train_nerf(tiny_config(tiny_scene, tmp_path, steps=7), progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == returned
    assert metrics["task"] == "nerf" and metrics["steps"] == 7 and metrics["spec"] == "sine:1@30"
    assert metrics["parameters"] < metrics["dense_parameters"] and len(metrics["test_views"]) == 2
    assert (metrics["test_views_scored"], metrics["test_views_total"]) == (2, 2)
    assert metrics["bytes"] == {"fp32": 4 * metrics["parameters"], "fp16": 2 * metrics["parameters"]}
    assert "occupancy grid" in metrics["sampling"]
    assert (run_dir / "test").is_dir() and any((run_dir / "test").glob("*.png"))
    assert (run_dir / metrics["video"]).is_file()
    assert storage.latest_checkpoint(run_dir).name == "step_0000007"

    # save -> load -> render gives the identical image, grid included
    run = open_run(run_dir)
    assert run.task == "nerf" and run.config == tiny_config(tiny_scene, tmp_path, steps=7)
    assert not run.is_training() and run.metrics() == metrics
    views = load_blender_split(tiny_scene, "test")
    renders = []
    for _ in range(2):
        model = run.load_model("cpu")
        renders.append(render_image(model.field, model.path, views.camtoworlds[0], 24, 24, views.focal,
                                    render_settings(run.config, views))["rgb"])
    assert torch.equal(renders[0], renders[1])
    assert isinstance(model.field, RadianceField) and model.estimator.binaries.any()

    # resume continues the step count in the same folder, also for a run saved before a config
    # key existed (here adam_beta2): the key's default fills in
    saved = storage.load_config(run_dir)
    del saved["adam_beta2"]
    storage.save_config(run_dir, saved)
    train_nerf({"steps": 12}, resume=run_dir, progress=False)
    assert storage.latest_checkpoint(run_dir).name == "step_0000012"
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 12


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny_scene, tmp_path, monkeypatch):
    original = RadianceField.forward
    calls = {"n": 0}

    def poisoned(self, points, directions):
        calls["n"] += 1
        rgb, sigma = original(self, points, directions)
        return (rgb * float("nan"), sigma) if calls["n"] > 6 else (rgb, sigma)

    monkeypatch.setattr(RadianceField, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 6; last good checkpoint kept in .*step_0000005"):
        train_nerf(tiny_config(tiny_scene, tmp_path, steps=20), progress=False)
    run_dir = next((tmp_path / "out").glob("*/*/*"))
    assert not (run_dir / ".lock").exists()
    assert storage.latest_checkpoint(run_dir).name == "step_0000005"
    monkeypatch.setattr(RadianceField, "forward", original)
    model = open_run(run_dir).load_model()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_config_values_are_checked_and_numeric_strings_become_numbers():
    config = overlay(defaults(NerfConfig), {"lr": "5e-4", "steps": 1e3}, source="my.yaml")
    assert config.lr == 5e-4 and config.steps == 1000 and isinstance(config.steps, int)
    bad_values = [({"lr": "fast"}, "my.yaml: lr must be a number"), ({"steps": 10.5}, "steps must be a whole number"),
                  ({"mixed_precision": "yes"}, "must be true or false"), ({"nope": 1}, "unknown config key 'nope'"),
                  ({"lr": 0}, "my.yaml: lr must be > 0, got 0"), ({"grid_resolution": 1}, "must be >= 2, got 1"),
                  ({"sampler": "magic"}, "sampler must be one of grid, naive"),
                  ({"aabb": [1, 2]}, "aabb must hold 6 numbers, got 2"),
                  ({"steps": None, "time_budget_s": None}, "needs a step limit or a time budget")]
    for overrides, message in bad_values:
        with pytest.raises(NeuralFieldsError, match=message):
            overlay(defaults(NerfConfig), overrides, source="my.yaml")


def test_forward_facing_llff_scene_trains_in_ndc(tiny_llff_scene, tmp_path):
    """LLFF scenes train through the same trainer with NDC rays: PSNR on the held-out views rises,
    and the run folder gets metrics and a video (a circle of forward-facing cameras)."""
    config = tiny_config(tiny_llff_scene, tmp_path, steps=150, aabb=[-1.5, -1.5, -1.0, 1.5, 1.5, 1.0],
                         render_step_size=0.02, checkpoint_every=10**6)
    test_views = load_views(tiny_llff_scene, "test")
    untrained = train_views_task(config, tiny_llff_scene)
    assert untrained.settings.ndc
    torch.testing.assert_close(untrained.rays_o[:, 2], torch.full_like(untrained.rays_o[:, 2], -1.0))  # NDC near plane
    before = untrained.evaluate_views(test_views, progress=False)["psnr"]
    run_dir, _ = train_nerf(config, progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_psnr"] > before + 3.0, (before, metrics["test_psnr"])
    assert (run_dir / metrics["video"]).is_file()


def test_auto_preset_follows_the_scene(tiny_scene, tiny_llff_scene):
    assert auto_preset("demo") == "demo"
    assert auto_preset(str(tiny_llff_scene), device="cpu") == "llff"
    assert auto_preset(str(tiny_scene), device="cpu") == "cpu"
    assert load_preset("llff").aabb[2] == -1.0  # the NDC box: z in [-1, 1]
