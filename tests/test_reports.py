"""Rate-distortion sweeps and reports on tiny budgets (steps, not seconds): the files a sweep
writes, --shard and the merging report, --resume without retraining, the learning-rate probe, the
equal-size dense baseline, real fp16/int8 quantisation, and one-line errors."""

import copy
import csv
import json
import runpy
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from neuralfields.config import overlay
from neuralfields.errors import NonFiniteLossError
from neuralfields.layers.linear import LowRankLinear
from neuralfields.layers.oialr import oialr_layers
from neuralfields.layers.spec import KINDS
from neuralfields.reports import sweep as sweep_module
from neuralfields.reports.evaluate import run_scorer
from neuralfields.reports.plots import compact_number
from neuralfields.reports.quantize import INT8_LEVELS, int8_groups, quantized_parameters
from neuralfields.reports.report import write_report
from neuralfields.reports.sweep import (
    SweepSettings, choose_learning_rates, equal_size_width, open_sweep_dir, parameter_count, plan_sweep, run_sweep,
)
from neuralfields.runs import open_run
from neuralfields.storage import write_json
from neuralfields.training import nerf, occupancy

SCRIPT = "rate_distortion.py"
OCCUPANCY_PRESET = {
    "num_uniform": 3000, "num_surface": 3000, "batch_size": 512, "eval_uniform_points": 2000,
    "eval_grid_resolution": 16, "eval_surface_samples": 1000, "checkpoint_every": 10, "device": "cpu", "threads": 1,
}
NERF_PRESET = {
    "num_layers": 3, "width": 32, "skip_layer": 2, "color_width": 16, "xyz_freqs": 4, "dir_freqs": 2,
    "grid_resolution": 16, "grid_warmup_steps": 32, "render_step_size": 0.05, "target_samples": 4096,
    "init_rays": 256, "max_rays": 1024, "lr": 5e-3, "adam_beta2": 0.99, "mixed_precision": False, "device": "cpu",
    "val_every": 10**6, "checkpoint_every": 5, "test_views": 2, "eval_chunk": 1024, "video_frames": 0, "threads": 1,
}


@pytest.fixture(scope="module")
def occupancy_preset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("occupancy-preset")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**OCCUPANCY_PRESET, "cache_dir": str(folder / "cache")}))
    return path


def occupancy_sweep_args(preset, out, *extra):
    """Two configurations on the built-in shape: sine rank 1 at width 16 and its equal-size dense."""
    return ("occupancy", "--kinds", "sine", "--ranks", "1", "--widths", "16", "--steps", "20", "--lr-probe-s", "0",
            "--preset", str(preset), "--out", str(out), *extra)


def rows_of(sweep_dir):
    with open(sweep_dir / "results.csv") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def test_sharded_sweep_writes_every_file_and_report_merges(occupancy_preset, tmp_path, run_script):
    sweep_dir = tmp_path / "sweep"
    first = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir, "--shard", "1/2"))
    assert first.returncode == 0, first.stderr
    after_first = rows_of(sweep_dir)
    assert not (sweep_dir / "runs" / "dense-equal-w16-k1-s0").exists()
    second = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir, "--shard", "2/2"))
    assert second.returncode == 0, second.stderr
    merged = run_script(SCRIPT, "report", str(sweep_dir))
    assert merged.returncode == 0, merged.stderr
    assert {name: row["status"] for name, row in after_first.items()} == {
        "sine-w16-k1-s0": "finished", "dense-equal-w16-k1-s0": "pending"}
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(sweep["commands"]) == 2 and "--shard 2/2" in sweep["commands"][1]
    assert [c["name"] for c in sweep["configurations"]] == ["sine-w16-k1-s0", "dense-equal-w16-k1-s0"]
    for name in ("report.md", "results.csv", "results.json"):
        assert (sweep_dir / name).is_file()
    for figure in ("quality_vs_parameters", "quality_vs_bytes", "meshes", "spectra"):
        for suffix in ("png", "svg"):
            assert (sweep_dir / "plots" / f"{figure}.{suffix}").stat().st_size > 1000
    rows = rows_of(sweep_dir)
    assert set(rows) == {"sine-w16-k1-s0", "dense-equal-w16-k1-s0"}
    for name, row in rows.items():
        metrics = json.loads((sweep_dir / "runs" / name / "metrics.json").read_text())
        assert row["status"] == "finished" and int(row["steps"]) == metrics["steps"] == 20
        assert float(row["iou_grid"]) == pytest.approx(metrics["iou_grid"])
        assert int(row["parameters"]) == metrics["parameters"]
        assert int(row["bytes_int8"]) < int(row["bytes_fp16"]) == 2 * metrics["parameters"]
        assert 0 <= float(row["iou_grid_int8"]) <= 1 and row["device"] == "cpu"
    assert int(rows["dense-equal-w16-k1-s0"]["parameters"]) <= int(rows["sine-w16-k1-s0"]["parameters"])
    report = (sweep_dir / "report.md").read_text()
    assert "2 of 2 runs finished" in report and "--shard 2/2" in report
    assert "| sine low-rank | 16 | 1 |" in report and "| dense (equal size) |" in report
    assert "![mesh thumbnails](plots/meshes.png)" in report and "torch:" in report
    assert "At most 177 parameters" in report  # the generated summary, at the sine network's size
    results = json.loads((sweep_dir / "results.json").read_text())
    assert len(results["runs"]) == 2 and results["summary"]


def test_resume_skips_finished_runs_and_resumes_interrupted_ones(occupancy_preset, tmp_path, run_script):
    sweep_dir = tmp_path / "sweep"
    assert run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir)).returncode == 0
    finished, interrupted = sweep_dir / "runs" / "sine-w16-k1-s0", sweep_dir / "runs" / "dense-equal-w16-k1-s0"
    (interrupted / "metrics.json").unlink()  # as if killed after its last checkpoint
    files = [path for path in finished.rglob("*") if path.is_file()]
    before = {path: path.stat().st_mtime_ns for path in files}

    refused = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir))
    assert refused.returncode == 2 and "already holds runs of this sweep" in refused.stderr
    resumed = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "sine-w16-k1-s0: iou_grid" in resumed.stdout and "(finished earlier)" in resumed.stdout
    assert resumed.stdout.count("run folder:") == 1 and "resuming at step 20" in resumed.stdout
    assert {path: path.stat().st_mtime_ns for path in files} == before  # nothing of the finished run rewritten
    assert json.loads((interrupted / "metrics.json").read_text())["steps"] == 20
    assert [path.name for path in open_run(interrupted).checkpoints()] == ["step_0000010", "step_0000020"]


def test_a_sweep_grows_by_more_seeds_and_ranks_without_retraining(occupancy_preset, tmp_path, run_script):
    sweep_dir = tmp_path / "sweep"
    assert run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir)).returncode == 0
    first = sweep_dir / "runs" / "sine-w16-k1-s0"
    before = {path: path.stat().st_mtime_ns for path in first.rglob("*") if path.is_file()}

    seeds = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir, "--seeds", "0,1", "--resume"))
    assert seeds.returncode == 0, seeds.stderr
    assert seeds.stdout.count("run folder:") == 2 and seeds.stdout.count("(finished earlier)") == 2
    ranks = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir, "--ranks", "2", "--resume"))
    assert ranks.returncode == 0, ranks.stderr
    refused = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir, "--ranks", "2", "--steps", "30"))
    assert refused.returncode == 2 and "holds a sweep with other settings (steps)" in refused.stderr

    assert {path: path.stat().st_mtime_ns for path in before} == before
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert (sweep["settings"]["ranks"], sweep["settings"]["seeds"]) == ([1, 2], [0, 1])
    assert [c["name"] for c in sweep["configurations"]] == [
        "sine-w16-k1-s0", "dense-equal-w16-k1-s0", "sine-w16-k1-s1", "dense-equal-w16-k1-s1",
        "sine-w16-k2-s0", "dense-equal-w16-k2-s0"]
    assert len(sweep["commands"]) == 3 and list(sweep["lines"]) == ["sine", "dense-equal"]
    rows = rows_of(sweep_dir)
    assert len(rows) == 6 and {row["status"] for row in rows.values()} == {"finished"}
    report = (sweep_dir / "report.md").read_text()
    assert "6 of 6 runs finished" in report and report.count("(n=2)") >= 2  # rank 1: sine and dense-equal


def test_publishing_a_sweep_keeps_finished_runs_without_optimiser_state(occupancy_preset, tmp_path, run_script):
    sweep_dir, published = tmp_path / "sweep", tmp_path / "published"
    assert run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, sweep_dir)).returncode == 0
    (sweep_dir / "runs" / "dense-equal-w16-k1-s0" / "metrics.json").unlink()  # interrupted: not resumable from a copy
    publish = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "publish_rd.py"))["publish"]
    assert publish(sweep_dir, published) == []

    runs = published / "runs"
    kept = {path.relative_to(runs).as_posix() for path in runs.rglob("*") if path.is_file()}
    assert {"sine-w16-k1-s0/metrics.json", "sine-w16-k1-s0/rd.json",
            "sine-w16-k1-s0/checkpoints/step_0000020/model.safetensors"} <= kept
    assert not any(name.startswith("dense-equal") or name.endswith("state.pt") for name in kept)
    assert {name: row["status"] for name, row in rows_of(published).items()} == {
        "sine-w16-k1-s0": "finished", "dense-equal-w16-k1-s0": "pending"}
    assert "1 of 2 runs finished" in (published / "report.md").read_text()


def test_nerf_sweep_probes_learning_rates_and_reevaluates_through_the_task(tiny_scene, tmp_path, run_script):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(NERF_PRESET))
    out = tmp_path / "sweep"
    result = run_script(SCRIPT, "nerf", "--scene", str(tiny_scene), "--kinds", "sine", "--ranks", "1", "--widths", "8",
                        "--steps", "4", "--lr-probe-steps", "2", "--probe-lrs", "0.002,0.02", "--preset", str(preset),
                        "--out", str(out))
    assert result.returncode == 0, result.stderr
    chosen = json.loads((out / "probe" / "lr.json").read_text())
    assert set(chosen) == {"sine-w8", "dense-equal-w8"}
    for group, entry in chosen.items():
        assert entry["metric"] == "val_psnr" and set(entry["scores"]) == {"0.002", "0.02"}
        assert entry["lr"] == float(max(entry["scores"], key=entry["scores"].get))
        probed = sorted(path.name for path in (out / "probe").glob(f"{group}-lr*"))
        assert probed == [f"{group}-lr0.002", f"{group}-lr0.02"]
    run = open_run(out / "runs" / "sine-w8-k1-s0")
    assert run.config.lr == chosen["sine-w8"]["lr"] and run.config.width == 8 and run.config.color_width == 4
    # the re-evaluation path reproduces the trainer's own test score before any quantisation
    _, score = run_scorer(run)
    assert score() == pytest.approx(run.metrics()["test_psnr"], abs=1e-4)
    quantized = json.loads((run.path / "rd.json").read_text())
    assert quantized["checkpoint"] == "step_0000004" and quantized["metric"] == "test_psnr"
    assert abs(quantized["fp16"]["value"] - run.metrics()["test_psnr"]) < 0.1
    assert (out / "plots" / "renders.png").is_file()
    report = (out / "report.md").read_text()
    assert "| sine low-rank | sine-w8-k1-s0 |" in report  # the probe table: line, probed configuration, ...
    assert "![test renders](plots/renders.png)" in report


@pytest.mark.parametrize("task", ["occupancy", "nerf"])
def test_equal_size_dense_is_the_widest_dense_network_within_the_budget(task, tiny_scene):
    if task == "nerf":
        base = overlay(nerf.load_preset("cpu"), {**NERF_PRESET, "scene": str(tiny_scene)}, "test")
    else:
        base = overlay(occupancy.load_preset("default"), {"width": 48}, "test")
    counts = {width: parameter_count(task, overlay(base, {"spec": "dense", "width": width,
                                                          **({"color_width": max(1, round(width / 2))}
                                                             if task == "nerf" else {})}, "test"))
              for width in range(1, base.width + 1)}
    for rank in (1, 2, 4):
        budget = parameter_count(task, overlay(base, {"spec": f"sine:{rank}"}, "test"))
        width = equal_size_width(task, base, budget, base.width)
        assert counts[width] <= budget
        assert width == max(w for w, count in counts.items() if count <= budget)  # the widest such network


def test_plan_pairs_every_rank_and_width_with_an_equal_size_dense_network(occupancy_preset):
    plan = plan_sweep(SweepSettings("occupancy", kinds=("lowrank", "sine"), ranks=(1, 3), widths=(12, 20), steps=5,
                                    preset=str(occupancy_preset), probe_steps=0))
    lines = [c.line for c in plan.configurations]
    assert lines.count("lowrank") == lines.count("lowrank-matched") == lines.count("sine") == 4
    specs = {c.name: str(c.config.spec) for c in plan.configurations}
    assert specs["lowrank-matched-w12-k3-s0"] == "lowrank:3,init=matched" and specs["lowrank-w12-k3-s0"] == "lowrank:3"
    sine = {(c.sweep_width, c.rank): c.parameters for c in plan.configurations if c.line == "sine"}
    equal = [c for c in plan.configurations if c.line == "dense-equal"]
    assert len(equal) == 4 and plan.probe is None
    for configuration in equal:
        assert configuration.parameters <= sine[configuration.sweep_width, configuration.rank]
        assert configuration.width < configuration.sweep_width and str(configuration.config.spec) == "dense"


def test_each_line_is_probed_at_each_width_and_a_continued_sweep_probes_only_new_groups(occupancy_preset, tmp_path):
    plan = plan_sweep(SweepSettings("occupancy", kinds=("sine",), ranks=(1,), widths=(12, 16), steps=3,
                                    preset=str(occupancy_preset), probe_steps=2, probe_lrs=(0.001, 0.01)))
    earlier = {group: {"lr": lr, "metric": "val_iou", "scores": {"0.001": 0.1, "0.01": 0.2}, "failed": {},
                       "line": group.rsplit("-w", 1)[0], "configuration": f"{group}-k1-s0"}
               for group, lr in (("sine-w12", 0.001), ("sine-w16", 0.01), ("dense-equal-w12", 0.01))}
    (tmp_path / "probe").mkdir()
    write_json(tmp_path / "probe" / "lr.json", earlier)
    open_sweep_dir(plan, tmp_path, "python scripts/rate_distortion.py occupancy ...")
    run_sweep(plan, tmp_path, progress=False)
    assert sorted(path.name for path in (tmp_path / "probe").iterdir()) == [
        "dense-equal-w16-lr0.001", "dense-equal-w16-lr0.01", "lr.json"]
    chosen = json.loads((tmp_path / "probe" / "lr.json").read_text())
    assert {group: chosen[group] for group in earlier} == earlier
    new = chosen["dense-equal-w16"]
    assert new["configuration"] == "dense-equal-w16-k1-s0" and set(new["scores"]) == {"0.001", "0.01"}
    # every run trains at the rate chosen for its line at its width
    for name, group in (("sine-w12-k1-s0", "sine-w12"), ("sine-w16-k1-s0", "sine-w16"),
                        ("dense-equal-w12-k1-s0", "dense-equal-w12"), ("dense-equal-w16-k1-s0", "dense-equal-w16")):
        assert open_run(tmp_path / "runs" / name).config.lr == chosen[group]["lr"]
    # a sweep folder from before per-width probes: the report names the groups its probe did not cover
    del chosen["sine-w16"]
    write_json(tmp_path / "probe" / "lr.json", chosen)
    write_report(tmp_path, progress=False)
    assert "Not probed: sine-w16 (" in (tmp_path / "report.md").read_text()


def test_two_processes_probing_one_sweep_keep_each_others_learning_rates(occupancy_preset, tmp_path, monkeypatch):
    plan = plan_sweep(SweepSettings("occupancy", kinds=("sine",), ranks=(1,), widths=(12,), steps=3,
                                    preset=str(occupancy_preset), probe_steps=1, probe_lrs=(0.01,)))
    other = {"sine-w99": {"lr": 0.001, "metric": "val_iou", "scores": {"0.001": 0.5}, "failed": {},
                          "line": "sine", "configuration": "sine-w99-k1-s0"}}
    score = sweep_module.probe_score

    def score_while_another_process_writes(run):
        write_json(tmp_path / "probe" / "lr.json", other)  # e.g. `--widths 99` into the same folder
        return score(run)

    monkeypatch.setattr(sweep_module, "probe_score", score_while_another_process_writes)
    lrs = choose_learning_rates(plan, tmp_path, progress=False)
    chosen = json.loads((tmp_path / "probe" / "lr.json").read_text())
    assert chosen["sine-w99"] == other["sine-w99"] and set(chosen) == {"sine-w99", "sine-w12", "dense-equal-w12"}
    assert lrs == {"sine-w12": 0.01, "dense-equal-w12": 0.01}


def test_log_axis_labels_are_short_numbers():
    assert [compact_number(value) for value in (500, 2000, 50_000, 1_500_000)] == ["500", "2k", "50k", "1.5M"]


def test_plan_runs_an_adaptive_line_once_per_width_and_seed_from_rank_1(occupancy_preset):
    plan = plan_sweep(SweepSettings("occupancy", kinds=("sine", "oialr@0.5"), ranks=(1, 3), widths=(12, 20),
                                    seeds=(0, 1), steps=5, preset=str(occupancy_preset), probe_steps=0))
    adaptive = [c for c in plan.configurations if c.line == "oialr@0.5"]
    assert sorted((c.sweep_width, c.seed) for c in adaptive) == [(12, 0), (12, 1), (20, 0), (20, 1)]
    assert {str(c.config.spec) for c in adaptive} == {"oialr:1@0.5"} and {c.rank for c in adaptive} == {None}
    assert adaptive[0].name == "oialr@0.5-w12-s0" and plan.lines["oialr@0.5"]["title"] == "OIALR (beta 0.5)"
    # dense-equal stays sized by the sine line, one per (rank, width, seed)
    sine = {(c.sweep_width, c.rank): c.parameters for c in plan.configurations if c.line == "sine"}
    equal = [c for c in plan.configurations if c.line == "dense-equal"]
    assert len(equal) == 8 and all(c.parameters <= sine[c.sweep_width, c.rank] for c in equal)


def test_an_oialr_line_is_placed_at_its_final_stored_size_with_a_rank_plot(tmp_path, run_script):
    preset = tmp_path / "tiny-oialr.yaml"  # warm-up and update interval short enough for the rank to shrink
    preset.write_text(yaml.safe_dump({**OCCUPANCY_PRESET, "cache_dir": str(tmp_path / "cache"),
                                      "oialr_warmup_steps": 5, "oialr_interval": 5}))
    out = tmp_path / "sweep"
    result = run_script(SCRIPT, *occupancy_sweep_args(preset, out, "--kinds", "sine,oialr@0.5"))
    assert result.returncode == 0, result.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    assert [c["name"] for c in sweep["configurations"]] == ["sine-w16-k1-s0", "oialr@0.5-w16-s0",
                                                            "dense-equal-w16-k1-s0"]
    planned = next(c["parameters"] for c in sweep["configurations"] if c["line"] == "oialr@0.5")
    run = open_run(out / "runs" / "oialr@0.5-w16-s0")
    stored = run.metrics()["parameters"]
    ranks = [layer.rank for layer in oialr_layers(run.load_model("cpu")).values()]
    assert ranks and max(ranks) < 16  # the schedule from the preset's config keys ran: the rank shrank
    # stored at the final ranks (16x16 hidden weights: U, V and r x r S instead of 256), not as planned at build
    assert stored == planned + sum(rank * (16 + 16) + rank * rank - 256 for rank in ranks) != planned
    row = rows_of(out)["oialr@0.5-w16-s0"]
    assert int(row["parameters"]) == stored and int(row["bytes_fp32"]) == 4 * stored
    assert row["final_ranks"] == str(ranks)
    groups = {g["line"]: g for g in json.loads((out / "results.json").read_text())["groups"]}
    assert groups["oialr@0.5"]["parameters"] == stored and groups["oialr@0.5"]["final_ranks"] == ranks
    assert groups["oialr@0.5"]["bytes"]["int8"] == json.loads((run.path / "rd.json").read_text())["int8"]["bytes"]
    for suffix in ("png", "svg"):
        assert (out / "plots" / f"oialr_ranks.{suffix}").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "![rank per layer over training (OIALR)](plots/oialr_ranks.png)" in report
    final_ranks = "/".join(map(str, ranks))
    assert f"| OIALR (beta 0.5) | 16 | {final_ranks} | {stored:,} |" in report
    assert "OIALR (beta 0.5) against sine low-rank at equal stored size" in report
    assert f"w16 ranks {final_ranks}: " in report and f"at {stored:,} parameters" in report


def test_a_sweep_recorded_before_adaptive_lines_still_reports(occupancy_preset, tmp_path, run_script):
    out = tmp_path / "sweep"
    assert run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, out)).returncode == 0
    sweep = json.loads((out / "sweep.json").read_text())
    for about in sweep["lines"].values():
        del about["param"]  # lines as sweeps wrote them before `--kinds` took '@' parameters
    (out / "sweep.json").write_text(json.dumps(sweep))
    (out / "report.md").unlink()
    result = run_script(SCRIPT, "report", str(out))
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "2 of 2 runs finished" in report and "| sine low-rank | 16 | 1 |" in report
    assert not (out / "plots" / "oialr_ranks.png").exists()


def test_fp16_storage_of_a_dense_layer_keeps_its_output():
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    values, size = quantized_parameters(layer, "fp16")
    stored = copy.deepcopy(layer)
    stored.load_state_dict(values, strict=False)
    assert size == 2 * (64 * 32 + 32)
    assert not torch.equal(stored.weight, layer.weight)  # really rounded
    x = torch.randn(256, 64)
    with torch.no_grad():
        torch.testing.assert_close(stored(x), layer(x), rtol=2e-3, atol=2e-3)
        assert (stored(x) - layer(x)).abs().max() > 0


def test_int8_round_trip_error_is_bounded_by_the_scale():
    torch.manual_seed(0)
    rows = torch.randn(16, 40) * torch.logspace(-3, 2, 16)[:, None]  # rows of very different magnitude
    codes, scales = int8_groups(rows)
    assert codes.dtype == torch.int8 and scales.shape == (16, 1)
    torch.testing.assert_close(scales[:, 0], rows.abs().amax(dim=1) / INT8_LEVELS)
    assert (codes.abs().amax(dim=1) == INT8_LEVELS).all()
    error = (codes.float() * scales - rows).abs()
    assert (error <= scales / 2 * (1 + 1e-5)).all() and error.max() > 0

    layer = LowRankLinear(64, 48, 4)  # factors: one scale per rank component (column)
    values, size = quantized_parameters(layer, "int8")
    assert size == (48 * 4 + 64 * 4 + 48) + 4 * (4 + 4 + 1)
    for name in ("U", "V"):
        column_scales = getattr(layer, name).detach().abs().amax(dim=0) / INT8_LEVELS
        assert ((values[name] - getattr(layer, name).detach()).abs() <= column_scales / 2 * (1 + 1e-5)).all()


@pytest.mark.parametrize("arguments, message", [
    (("--kinds", "dense,conv"), f"unknown layer kind 'conv' in --kinds; choose from {', '.join(KINDS)}"),
    (("--kinds", "sine", "--ranks", "32", "--widths", "16"),
     "configuration sine-w16-k32-s0: rank 32 is larger than the layer width 16 allows"),
    (("--budget-s", "0"), "--budget-s takes numbers > 0, got 0.0"),
    (("--ranks", "1,x"), "--ranks must be comma-separated whole numbers, got '1,x'"),
    (("--shard", "3/2"), "--shard I/N needs 1 <= I <= N, got 3/2"),
    (("--kinds", "sine,oialr@2"), "--kinds entry 'oialr@2': beta must lie in (0, 1), got 2.0"),
    (("--kinds", "dense@3"), "--kinds entry 'dense@3': '@' (omega or beta) does not apply to 'dense' layers"),
    (("--kinds", "foo@0.5"), f"unknown layer kind 'foo' in --kinds; choose from {', '.join(KINDS)}"),
    (("--kinds", "oialr@0.5,oialr@0.50"), "--kinds names a line twice: oialr@0.5,oialr@0.50"),
])
def test_bad_input_is_one_line_and_makes_nothing(arguments, message, occupancy_preset, tmp_path, run_script):
    out = tmp_path / "sweep"
    result = run_script(SCRIPT, "occupancy", "--steps", "5", "--preset", str(occupancy_preset), "--out", str(out),
                        *arguments)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {message}" and not out.exists()


def test_report_of_a_folder_that_is_not_a_sweep_is_one_line(tmp_path, run_script):
    result = run_script(SCRIPT, "report", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path} is not a sweep folder: sweep.json is missing"


def test_a_failed_run_is_marked_and_the_sweep_goes_on(occupancy_preset, tmp_path, run_script, monkeypatch):
    original = occupancy.OccupancyTask.train_step

    def train_step(self, step, lr):
        if self.config.spec.kind == "sine" and step == 3:
            raise NonFiniteLossError("loss became nan at step 3; no checkpoint had been written yet")
        return original(self, step, lr)

    monkeypatch.setattr(occupancy.OccupancyTask, "train_step", train_step)
    out = tmp_path / "sweep"
    result = run_script(SCRIPT, *occupancy_sweep_args(occupancy_preset, out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 run(s) failed, marked in the report: sine-w16-k1-s0: loss became nan at step 3; "
        "no checkpoint had been written yet")
    assert (out / "runs" / "sine-w16-k1-s0" / "failed.txt").read_text().startswith("loss became nan at step 3")
    rows = rows_of(out)
    assert rows["sine-w16-k1-s0"]["status"] == "failed" and rows["dense-equal-w16-k1-s0"]["status"] == "finished"
    report = (out / "report.md").read_text()
    assert "1 of 2 runs finished" in report and "1 failed<br>sine-w16-k1-s0: loss became nan at step 3" in report
