"""`make demo`: the sweep its Makefile recipe runs, planned from the recipe's own arguments, has the
five runs and the sizes the README states (nothing is trained)."""

import re
import runpy
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from neuralfields.layers.counting import parameter_report
from neuralfields.reports.sweep import plan_sweep
from neuralfields.training.nerf import build_field, load_preset

ROOT = Path(__file__).resolve().parents[1]


def demo_sweep_arguments() -> list[str]:
    """The arguments of the rate_distortion.py command in the Makefile's demo recipe, without the
    ones make fills in (the timestamped --out, $(DEMO_FLAGS))."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    command = next(line for line in recipe.splitlines() if "scripts/rate_distortion.py" in line)
    words = shlex.split(command.split("scripts/rate_distortion.py", 1)[1].split(";")[0].split("&&")[0])
    if "--out" in words:
        del words[words.index("--out"):words.index("--out") + 2]
    return [word for word in words if "$" not in word]


def test_make_demo_plans_dense_low_rank_sine_and_equal_size_dense(tiny_scene, monkeypatch):
    arguments = demo_sweep_arguments()
    assert arguments[:3] == ["nerf", "--scene", "demo"] and "--preset" in arguments
    script = runpy.run_path(str(ROOT / "scripts" / "rate_distortion.py"))
    monkeypatch.setattr(sys, "argv", ["rate_distortion.py", *arguments])
    settings = script["settings_from"](script["parse_args"]())
    plan = plan_sweep(replace(settings, target=str(tiny_scene)))  # the same networks, no demo scene to render
    sizes = {c.line: (c.width, c.rank, c.parameters) for c in plan.configurations}
    assert sizes == {"dense": (64, None, 41_444), "lowrank": (64, 8, 11_084), "lowrank-matched": (64, 8, 11_084),
                     "sine": (64, 8, 11_084), "dense-equal": (30, 8, 10_759)}
    assert plan.probe is None and plan.base.time_budget_s == 45 and plan.base.steps is None
    sine = next(c.config for c in plan.configurations if c.line == "sine")
    assert str(sine.spec) == "sine:8@30" and sine.lr == 0.015
    assert plan.reference_parameters == 41_444


def test_demo_preset_is_the_sine_network_of_the_sweep():
    config = load_preset("demo")
    assert (config.scene, config.downscale, config.width, config.color_width, config.xyz_freqs) == ("demo", 2, 64, 32, 6)
    assert str(config.spec) == "sine:8@30" and parameter_report(build_field(config))["parameters"] == 11_084
    assert (config.budget_clock, config.threads, config.video_frames) == ("cpu", 1, 24)
