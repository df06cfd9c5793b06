"""Training on a synthetic circling capture: detected, spherified, sampled by a multi-level grid with
growing steps and a contracted field, the kind printed once and recorded; PSNR on the held-out
photos rises. The preset choice follows the measured (or forced) kind."""

import json

import torch
import yaml

from neuralfields.config import defaults, overlay
from neuralfields.data.scenes import load_views
from neuralfields.training.nerf import NerfConfig, NerfTask, auto_preset, load_preset, train_nerf

TINY_CIRCLING = {
    "spec": "dense", "num_layers": 3, "width": 32, "skip_layer": 2, "color_width": 16, "xyz_freqs": 4,
    "dir_freqs": 2, "aabb": [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], "grid_levels": 3, "grid_resolution": 16,
    "grid_warmup_steps": 32, "contraction": "sphere", "render_step_size": 0.02, "cone_angle": 0.02,
    "target_samples": 4096, "init_rays": 256, "max_rays": 1024, "lr": 5e-3, "lr_final_ratio": 0.2,
    "adam_beta2": 0.99, "mixed_precision": False, "device": "cpu", "val_every": 10**6, "checkpoint_every": 10**6,
    "eval_chunk": 1024, "video_frames": 2, "video_fps": 2, "threads": 1,
}


def test_circling_capture_trains_with_world_rays(circling_capture, tmp_path, capsys):
    scene = circling_capture.nerfstudio
    config = overlay(defaults(NerfConfig), {**TINY_CIRCLING, "scene": str(scene), "steps": 150,
                                            "output_root": str(tmp_path / "out")}, "test")
    assert config.scene_kind == "auto"
    test_views = load_views(scene, "test")
    untrained = NerfTask(config, torch.device("cpu"), load_views(scene, "train"), scene_dir=scene)
    assert not untrained.settings.ndc and untrained.settings.contraction == "sphere"
    assert untrained.path.estimator.binaries.shape[0] == 3
    before = untrained.evaluate_views(test_views, progress=False)["psnr"]

    run_dir, metrics = train_nerf(config, progress=False)
    printed = capsys.readouterr().out
    assert printed.count("circling capture -> recentred on the point nearest all optical axes") == 1
    assert "16 photos (nerfstudio transforms.json)" in printed
    assert metrics["test_psnr"] > before + 3.0, (before, metrics["test_psnr"])  # measured: 9.3 -> 14.3 dB
    assert metrics["scene_kind"] == "circling" and metrics["view_spread_deg"] > 30
    assert metrics["test_views_scored"] == metrics["test_views_total"] == 2
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["scene_kind"] == "circling" and saved["grid_levels"] == 3  # the kind used is recorded
    assert json.loads((run_dir / "metrics.json").read_text())["scene_kind"] == "circling"


def test_auto_preset_follows_the_capture_kind(circling_capture, tiny_llff_scene):
    for folder in (circling_capture.llff, circling_capture.nerfstudio, circling_capture.colmap):
        assert auto_preset(str(folder), device="cpu") == "circling"
    assert auto_preset(str(circling_capture.llff), device="cpu", scene_kind="forward") == "llff"
    assert auto_preset(str(tiny_llff_scene), device="cpu") == "llff"
    preset = load_preset("circling")
    assert (preset.scene_kind, preset.grid_levels, preset.contraction) == ("circling", 4, "sphere")
    assert preset.cone_angle > 0 and preset.downscale == 8 and preset.time_budget_s == 300


def test_forcing_forward_on_a_circling_capture_is_recorded(circling_capture, tmp_path, capsys):
    config = overlay(defaults(NerfConfig), {**TINY_CIRCLING, "scene": str(circling_capture.llff), "steps": 2,
                                            "scene_kind": "forward", "contraction": "none", "grid_levels": 1,
                                            "output_root": str(tmp_path / "out"), "video_frames": 0}, "test")
    run_dir, metrics = train_nerf(config, progress=False)
    assert "but the scene kind is set to forward" in capsys.readouterr().out
    assert metrics["scene_kind"] == "forward"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["scene_kind"] == "forward"


def test_scene_kind_flag_picks_the_preset_and_reaches_the_config(circling_capture, tmp_path, run_script):
    """--scene-kind forward on a circling capture: the llff preset (NDC box), the kind in config.yaml."""
    preset = tmp_path / "tiny.yaml"
    preset.write_text("extends: llff\n" + "".join(
        f"{key}: {value}\n" for key, value in {**TINY_CIRCLING, "steps": 2, "video_frames": 0, "downscale": 1,
                                               "contraction": "none", "grid_levels": 1,
                                               "aabb": [-1.5, -1.5, -1.0, 1.5, 1.5, 1.0]}.items()))
    result = run_script("train_nerf.py", "--scene", str(circling_capture.colmap), "--scene-kind", "forward",
                        "--preset", str(preset), "--output-root", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "but the scene kind is set to forward: forward-facing capture" in result.stdout
    (config_file,) = (tmp_path / "out").glob("*/*/*/config.yaml")
    assert yaml.safe_load(config_file.read_text())["scene_kind"] == "forward"
    bad = run_script("train_nerf.py", "--scene", str(circling_capture.colmap), "--scene-kind", "inward")
    assert bad.returncode == 2 and "invalid choice: 'inward'" in bad.stderr
