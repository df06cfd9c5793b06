"""Run folders, atomic checkpoints, NaN detection and the shared CLI arguments."""

import argparse
import os

import pytest
import torch
from torch import nn

from neuralfields.cli import add_layer_args, layer_spec_from_args
from neuralfields.errors import NeuralFieldsError, NonFiniteLossError
from neuralfields.layers.spec import LayerSpec
from neuralfields.training.runs import (
    check_finite, create_run_dir, latest_checkpoint, load_checkpoint, load_config, save_checkpoint,
    save_config, write_json,
)


def small_model():
    return nn.Sequential(LayerSpec.parse("sine:1@30").build(8, 8), nn.ReLU(), nn.Linear(8, 2))


def test_checkpoint_round_trip_with_optimizer(tmp_path):
    torch.manual_seed(0)
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, 7, model, optimizer, extra={"psnr": 21.5})

    restored, restored_opt = small_model(), None
    restored_opt = torch.optim.Adam(restored.parameters(), lr=1e-2)
    step, extra = load_checkpoint(latest_checkpoint(tmp_path), restored, restored_opt)
    assert (step, extra) == (7, {"psnr": 21.5})
    x = torch.randn(3, 8)
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    assert restored_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_checkpoints_are_pruned_and_leave_no_temporaries(tmp_path):
    model = small_model()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, model, keep=2)
    names = sorted(os.listdir(tmp_path / "checkpoints"))
    assert names == ["step_0000020", "step_0000030"]
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
    check_finite(torch.tensor(0.3), 6, tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 6; last good checkpoint kept in .*step_0000005"):
        check_finite(torch.tensor(float("nan")), 6, tmp_path)


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


def parse(argv):
    parser = argparse.ArgumentParser()
    add_layer_args(parser)
    return parser.parse_args(argv)


def test_layer_arguments(capsys):
    assert layer_spec_from_args(parse(["--rank", "1"]), default_omega=800) == LayerSpec("sine", 1, 800.0)
    assert layer_spec_from_args(parse(["--kind", "lowrank", "--rank", "4"]), 800) == LayerSpec("lowrank", 4)
    assert layer_spec_from_args(parse(["--kind", "dense"]), 800) == LayerSpec("dense")
    with pytest.raises(NeuralFieldsError, match="--omega applies only to --kind sine"):
        layer_spec_from_args(parse(["--kind", "lowrank", "--omega", "5"]), 800)
    for argv, message in [(["--rank", "0"], "rank must be an integer >= 1, got 0"),
                          (["--omega", "-1"], "omega must be a finite number > 0"),
                          (["--kind", "conv"], "invalid choice: 'conv'")]:
        with pytest.raises(SystemExit) as info:
            parse(argv)
        assert info.value.code == 2 and message in capsys.readouterr().err


def test_yaml_mapping_errors(tmp_path):
    from neuralfields.training.runs import read_yaml_mapping

    with pytest.raises(NeuralFieldsError, match="config file not found"):
        read_yaml_mapping(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(NeuralFieldsError, match="bad.yaml is not valid YAML"):
        read_yaml_mapping(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(NeuralFieldsError, match="must hold a mapping"):
        read_yaml_mapping(tmp_path / "list.yaml")
    (tmp_path / "ok.yaml").write_text("steps: 10\n")
    assert read_yaml_mapping(tmp_path / "ok.yaml") == {"steps": 10}
