"""Adaptive-rank (OIALR) occupancy runs at a fixed CPU time budget: final rank per layer, stored
and trainable parameters, quality, time, and the rank of each layer over the training steps.

    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_oialr.py --mesh bunny \
        --specs oialr:1@0.2,oialr:1@0.5,oialr:1@0.8,oialrsine:1@0.5,sine:1 --seconds 120 --threads 1
    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_oialr.py --mesh bunny \
        --specs oialrsine:1@0.5 --seconds 120 --threads 1 --flush-denormal
    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_oialr.py --mesh armadillo \
        --specs oialr:1@0.2,oialr:1@0.5,oialr:1@0.8,sine:1 --seconds 120 --threads 1

Each spec trains the reference occupancy network (configs/occupancy/default.yaml: dense input
layer, two 256-wide hidden layers from the spec, dense output logit) for `--seconds` of training
time with the OIALR schedule given by --warmup / --interval (the run config keys oialr_warmup_steps
and oialr_interval: full-rank steps before the switch to U S V^T, steps between rank updates), then
evaluates IoU (uniform, 128^3 grid), Chamfer-L1 and normal consistency. Non-OIALR specs (e.g.
sine:1) run beside them as the same-session reference.

Results: benchmarks/results/oialr_occupancy_<mesh>.json (rewritten after every run; entries of
specs not re-run are kept) with the load average at the start and end of each run (the machine is
shared), and the plot benchmarks/results/oialr_ranks_<mesh>.png (rank per layer over steps).
`--plot-only` redraws the plot from the JSON. Run folders go under outputs/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from neuralfields.cli import run_cli
from neuralfields.config import overlay
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.oialr import DEFAULT_INTERVAL, DEFAULT_WARMUP_STEPS, oialr_layers
from neuralfields.layers.spec import LayerSpec
from neuralfields.reports.plots import RankPanel, rank_figure
from neuralfields.runs import open_run
from neuralfields.storage import create_run_dir, write_json
from neuralfields.training.occupancy import load_preset, train_occupancy

from bench_occupancy import committed_keys, mesh_path
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", default="bunny", help="name in ../shared/data/meshes or a mesh path")
    parser.add_argument("--specs", default="oialr:1@0.1,oialr:1@0.2,oialr:1@0.3",
                        help="comma-separated layer specs (oialr:K@BETA, oialrsine:K@BETA, or any other kind)")
    parser.add_argument("--seconds", type=float, default=120.0, help="training time budget per run")
    parser.add_argument("--steps", type=int, help="a step limit instead of the time budget (smoke runs)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP_STEPS, help="OIALR full-rank warm-up steps")
    parser.add_argument("--interval", type=int, default=DEFAULT_INTERVAL, help="OIALR steps between rank updates")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on the shared 2-core machine)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="further occupancy config values (YAML scalars), e.g. num_surface=20000 for smoke runs")
    parser.add_argument("--flush-denormal", action="store_true",
                        help="torch.set_flush_denormal(True): Gaussian activations that underflow into denormal "
                        "floats make CPU steps ~10x slower (seen with oialrsine in its full-rank sine warm-up)")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/oialr_occupancy_<mesh>.json)")
    parser.add_argument("--plot-only", action="store_true", help="only redraw the rank plot from the JSON")
    return parser.parse_args()


def set_values(pairs: list[str]) -> dict:
    import yaml

    values = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals:
            raise NeuralFieldsError(f"--set expects KEY=VALUE, got {pair!r}")
        values[key] = yaml.safe_load(text)
    return values


def layer_ranks(run_dir: Path) -> dict:
    """Per OIALR layer of the run's final model: shape, final rank, rank history, parameters."""
    model = open_run(run_dir).load_model("cpu")
    report = parameter_report(model)
    rows = {row["name"]: row for row in report["layers"]}
    layers = {}
    for name, layer in oialr_layers(model).items():
        layers[name] = {
            "in_features": layer.in_features, "out_features": layer.out_features, "final_rank": layer.rank,
            "rank_history": layer.rank_history(), "stored_parameters": rows[name]["parameters"],
            "trainable_parameters": rows[name]["trainable_parameters"],
            "dense_parameters": rows[name]["dense_parameters"],
        }
    return {"trainable_parameters": report["trainable_parameters"], "layers": layers}


def plot_ranks(report: dict, path: Path) -> None:
    """Rank of each OIALR layer over training steps, one panel per spec (plots.rank_figure)."""
    runs = {name: run for name, run in report["runs"].items() if run.get("oialr")}
    if not runs:
        return
    panels = []
    for name, run in runs.items():
        iou = next((f"IoU {value:.3f} ({key[4:]})" for key, value in run.items() if key.startswith("iou_grid_")), "")
        histories = {layer: data["rank_history"] for layer, data in run["oialr"]["layers"].items()}
        panels.append(RankPanel(f"{name}\n{iou}, {run['parameters']:,} stored", histories, run["steps"],
                                run["oialr"]["schedule"]["warmup_steps"]))
    budget = (f"{report['seconds_per_run']:g} s" if report.get("seconds_per_run") is not None
              else f"{report['steps_per_run']} steps")
    figure = rank_figure(panels, f"OIALR rank per layer over training, occupancy {report['mesh_name']} "
                                 f"({budget} per run; dotted: end of full-rank warm-up)")
    figure.savefig(path, dpi=120)


def main() -> int:
    args = parse_args()
    mesh = mesh_path(args.mesh)
    output = args.out or ROOT / "benchmarks" / "results" / f"oialr_occupancy_{mesh.stem}.json"
    plot = output.with_name(output.stem.replace("oialr_occupancy", "oialr_ranks") + ".png")
    output.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(output.read_text()) if output.is_file() else {"runs": {}}
    if args.plot_only:
        plot_ranks(report, plot)
        print(f"plot: {plot}")
        return 0
    if not mesh.is_file():
        raise NeuralFieldsError(f"mesh file not found: {mesh}")
    specs = [LayerSpec.parse(text.strip()).resolved() for text in args.specs.split(",") if text.strip()]
    extra = set_values(args.set)
    report.update({
        "benchmark": "OIALR adaptive-rank occupancy at a fixed training-time budget",
        "mesh": str(mesh.relative_to(ROOT.parent)) if mesh.is_relative_to(ROOT.parent) else str(mesh),
        "mesh_name": mesh.stem,
        "seconds_per_run": args.seconds if args.steps is None else None,
        "steps_per_run": args.steps,
        "config_overrides": extra,
        "protocols": {
            "iou_uniform": "100k points uniform in the padded cube [-0.55, 0.55]^3 (mesh normalised to [-0.5, 0.5]^3)",
            "iou_grid_128": "all points of a 128^3 grid spanning the padded cube",
            "chamfer_l1": "100k surface samples per mesh, mean nearest distance averaged both ways, unit-cube units",
            "normal_consistency": "mean |cos| of face normals of nearest surface samples, both ways",
            "parameters": "stored numbers: U, S, V at the final rank + biases + the dense input/output layers",
            "trainable_parameters": "numbers the optimiser updates at the end (S + biases + dense layers)",
        },
    })
    if args.flush_denormal and not torch.set_flush_denormal(True):
        raise NeuralFieldsError("--flush-denormal: this CPU does not support flushing denormals")
    budget = {"steps": None, "time_budget_s": args.seconds} if args.steps is None else {"steps": args.steps,
                                                                                          "time_budget_s": None}
    for spec in specs:
        name = str(spec)
        overrides = {"mesh": str(mesh), "spec": name, "threads": args.threads, "oialr_warmup_steps": args.warmup,
                     "oialr_interval": args.interval, **budget, **extra}
        config = overlay(load_preset("default"), overrides, f"benchmark spec {name}")
        run_dir = create_run_dir(ROOT / "outputs" / "bench", "occupancy", mesh.stem, spec.label)
        print(f"== {name} (warm-up {args.warmup}, interval {args.interval}) -> {run_dir}", flush=True)
        load_start = os.getloadavg()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        run_dir, metrics = train_occupancy(config, run_dir=run_dir, progress=True)
        entry = {**committed_keys(metrics), "date": started,
                 "loadavg_start": [round(x, 2) for x in load_start],
                 "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                 "machine": machine_info(), "run_dir": str(run_dir.relative_to(ROOT)),
                 "flush_denormal": args.flush_denormal}
        ranks = layer_ranks(run_dir)
        entry["trainable_parameters"] = ranks["trainable_parameters"]
        if ranks["layers"]:
            entry["oialr"] = {"schedule": {"warmup_steps": args.warmup, "interval": args.interval},
                              "layers": ranks["layers"]}
        report["runs"][name + (" flush-denormal" if args.flush_denormal else "")] = entry
        write_json(output, report)
        plot_ranks(report, plot)
        summary = {k: entry[k] for k in ("iou_grid_128", "chamfer_l1", "steps", "parameters", "trainable_parameters")
                   if k in entry}
        summary["final_ranks"] = {layer: row["final_rank"] for layer, row in ranks["layers"].items()}
        print(json.dumps(summary), flush=True)
    print(f"results: {output}\nplot: {plot}")
    return 0


if __name__ == "__main__":
    run_cli(main)
