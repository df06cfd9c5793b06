"""The scripts' shared vocabulary: layer flags over a preset, the budget rule, --set, deprecated
spellings, what --resume accepts; and progress output that suits a log file."""

import argparse
import io

import pytest

from neuralfields.cli import DEPRECATED_FLAGS, add_run_args, renamed_flags, run_overrides
from neuralfields.config import defaults, overlay
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.spec import LayerSpec
from neuralfields.progress import progress_bar
from neuralfields.runs import open_run
from neuralfields.storage import RunLock
from neuralfields.training.nerf import NerfConfig

BASE = defaults(NerfConfig)  # spec sine:1@100, steps 20000, no time budget


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_args(parser, "preset")
    return parser.parse_args(list(argv))


def overrides(*argv: str, base=BASE) -> dict:
    return run_overrides(parse(*argv), base)


def test_layer_flags_change_only_what_they_name():
    assert overrides("--rank", "4")["spec"] == LayerSpec("sine", 4, 100.0)
    assert overrides("--omega", "30")["spec"] == LayerSpec("sine", 1, 30.0)
    assert overrides("--kind", "lowrank")["spec"] == LayerSpec("lowrank", 1)
    assert overrides("--kind", "dense")["spec"] == LayerSpec("dense")
    assert overrides("--spec", "lowrank:8")["spec"] == LayerSpec("lowrank", 8)
    assert "spec" not in overrides("--steps", "3")
    dense_base = overlay(BASE, {"spec": "dense"}, "test")
    assert overrides("--kind", "sine", "--rank", "2", base=dense_base)["spec"] == LayerSpec("sine", 2)
    matched_base = overlay(BASE, {"spec": "lowrank:1,init=matched"}, "test")
    assert overrides("--rank", "2", base=matched_base)["spec"] == LayerSpec("lowrank", 2, init="matched")
    assert overrides("--kind", "sine", base=matched_base)["spec"] == LayerSpec("sine", 1)
    for argv, message in [(["--kind", "lowrank", "--omega", "5"], "--omega applies only to --kind sine"),
                          (["--kind", "dense", "--rank", "2"], "--rank does not apply to --kind dense"),
                          (["--kind", "sine"], "--kind sine needs --rank"),
                          (["--spec", "dense", "--rank", "2"], "either --spec or --kind/--rank/--omega"),
                          (["--spec", "sine:x"], "--spec: malformed layer spec")]:
        with pytest.raises(NeuralFieldsError, match=message):
            overrides(*argv, base=dense_base if argv[:2] == ["--kind", "sine"] else BASE)


def test_bad_flag_values_exit_with_one_line(capsys):
    for argv, message in [(["--rank", "0"], "rank must be an integer >= 1, got 0"),
                          (["--omega", "-1"], "omega must be a finite number > 0"),
                          (["--kind", "conv"], "invalid choice: 'conv'"),
                          (["--time-budget", "-5"], "time budget must be a finite number >= 0 seconds (0: none), got -5"),
                          (["--set", "lr"], "expected KEY=VALUE, got 'lr'")]:
        with pytest.raises(SystemExit) as info:
            parse(*argv)
        assert info.value.code == 2 and message in capsys.readouterr().err


def test_budget_rule_one_limit_named_lifts_the_other():
    assert overrides("--time-budget", "180") == {"time_budget_s": 180.0, "steps": None}
    assert overrides("--steps", "50") == {"steps": 50, "time_budget_s": None}
    assert overrides("--steps", "50", "--time-budget", "9") == {"steps": 50, "time_budget_s": 9.0}
    assert overrides("--steps", "50", "--time-budget", "0") == {"steps": 50, "time_budget_s": None}
    config = overlay(BASE, overrides("--time-budget", "180"), "command line")
    assert config.describe_budget() == "180 s"
    assert overlay(BASE, overrides("--steps", "5", "--time-budget", "9"), "x").describe_budget() == \
        "5 steps or 9 s, whichever comes first"


def test_set_reaches_any_key_and_is_checked():
    values = overrides("--set", "render_step_size=0.02", "--set", "aabb=[-1, -1, -1, 1, 1, 1]")
    config = overlay(BASE, values, "command line")
    assert config.render_step_size == 0.02 and config.aabb == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    with pytest.raises(NeuralFieldsError, match="^command line: unknown config key 'render_step'$"):
        overlay(BASE, overrides("--set", "render_step=0.02"), "command line")


def test_resume_takes_only_budget_and_device():
    assert run_overrides(parse("--resume", "r", "--steps", "9", "--device", "cpu")) == \
        {"steps": 9, "time_budget_s": None, "device": "cpu"}
    with pytest.raises(NeuralFieldsError, match="continues a run with its own layers"):
        run_overrides(parse("--resume", "r", "--rank", "2"))
    with pytest.raises(NeuralFieldsError, match=r"takes only --steps, --time-budget, --device and --threads \(got lr\)"):
        run_overrides(parse("--resume", "r", "--lr", "0.1"))


def test_deprecated_spellings_still_work_with_a_note(capsys):
    argv = renamed_flags(["--output", "runs", "--max-seconds=30", "--rank", "2"], DEPRECATED_FLAGS)
    assert argv == ["--output-root", "runs", "--time-budget=30", "--rank", "2"]
    err = capsys.readouterr().err
    assert "--output is deprecated and will be removed; use --output-root" in err
    assert "--max-seconds is deprecated" in err


def test_scripts_share_the_vocabulary(tiny_scene, tmp_path, run_script):
    for script in ("train_nerf.py", "train_occupancy.py"):
        help_text = run_script(script, "--help").stdout
        for flag in ("--preset", "--steps", "--time-budget", "--output-root", "--resume", "--set", "--spec",
                     "--threads", "--device", "--seed", "--lr", "--kind", "--rank", "--omega"):
            assert flag in help_text, (script, flag)
    result = run_script("train_nerf.py", "--scene", str(tiny_scene), "--set", "nope=1", "--output-root", str(tmp_path))
    assert result.returncode == 2 and result.stderr.strip() == "error: command line: unknown config key 'nope'"
    assert list(tmp_path.iterdir()) == []


def test_progress_in_a_log_file_is_a_few_plain_lines():
    log = io.StringIO()
    bar = progress_bar(total=1000, desc="training", file=log)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 1 and lines[-1].startswith("training: 100%")  # short work: the last line only


def test_readers_see_a_run_that_is_training(tmp_path):
    (tmp_path / "config.yaml").write_text("task: occupancy\n")
    with RunLock(tmp_path):
        assert open_run(tmp_path).is_training()
    assert not open_run(tmp_path).is_training()
