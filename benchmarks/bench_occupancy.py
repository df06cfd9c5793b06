"""Occupancy IoU / Chamfer benchmark at a fixed CPU time budget per run.

    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_occupancy.py \
        --mesh armadillo --configs sine-k1,lowrank-k1,dense --seconds 180

Each named config trains the reference occupancy network (configs/occupancy/default.yaml, or
relu_pe.yaml for the relu-pe-* configs) for `--seconds` of training time, then evaluates both IoU
protocols, Chamfer-L1 and normal consistency. Results go to benchmarks/results/occupancy_<mesh>.json,
rewritten after every run; entries of configs that are not re-run are kept, so subsets can be run
separately. Run folders (meshes, checkpoints) go under outputs/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from neuralfields.cli import run_cli
from neuralfields.config import overlay
from neuralfields.errors import NeuralFieldsError
from neuralfields.storage import create_run_dir, write_json
from neuralfields.training.occupancy import load_preset, train_occupancy

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
SHARED_MESHES = ROOT.parent / "shared" / "data" / "meshes"
CONFIGS: dict[str, tuple[str, str]] = {  # name: (preset in configs/occupancy/, layer spec)
    "sine-k1": ("default", "sine:1"),
    "sine-k2": ("default", "sine:2"),
    "sine-k4": ("default", "sine:4"),
    "lowrank-k1": ("default", "lowrank:1"),
    "lowrank-k2": ("default", "lowrank:2"),
    "lowrank-k4": ("default", "lowrank:4"),
    "dense": ("default", "dense"),
    "relu-pe-sine-k1": ("relu_pe", "sine:1"),
    "relu-pe-lowrank-k1": ("relu_pe", "lowrank:1"),
    "relu-pe-dense": ("relu_pe", "dense"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", default="armadillo", help="name in ../shared/data/meshes or a mesh path")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--seconds", type=float, default=180.0, help="training time budget per run")
    parser.add_argument("--omega", type=float, help="omega for the sine configs (default: the trainer's 100)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on the shared 2-core machine two threads "
                        "oversubscribe and run several times slower)")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/occupancy_<mesh>.json)")
    return parser.parse_args()


def mesh_path(name: str) -> Path:
    path = Path(name)
    if path.suffix:
        return path
    return SHARED_MESHES / f"{name}.obj"


def committed_keys(metrics: dict) -> dict:
    """A run's metrics under the keys of the committed results (`iou_grid_128`, `bytes_fp32`,
    `bytes_fp16`; metrics.json says `iou_grid` + `iou_grid_resolution` and `bytes: {fp32, fp16}`),
    so that re-run entries and kept ones read alike."""
    metrics = dict(metrics)
    metrics[f"iou_grid_{metrics.pop('iou_grid_resolution')}"] = metrics.pop("iou_grid")
    sizes = metrics.pop("bytes")
    metrics.update(bytes_fp32=sizes["fp32"], bytes_fp16=sizes["fp16"])
    return metrics


def main() -> int:
    args = parse_args()
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise NeuralFieldsError(f"unknown benchmark config '{unknown[0]}' (choose from {', '.join(CONFIGS)})")
    mesh = mesh_path(args.mesh)
    if not mesh.is_file():
        raise NeuralFieldsError(f"mesh file not found: {mesh}")
    output = args.out or ROOT / "benchmarks" / "results" / f"occupancy_{mesh.stem}.json"
    report = json.loads(output.read_text()) if output.is_file() else {"runs": {}}
    report.update({
        "benchmark": "occupancy IoU/Chamfer at a fixed training-time budget",
        "mesh": str(mesh.relative_to(ROOT.parent)) if mesh.is_relative_to(ROOT.parent) else str(mesh),
        "seconds_per_run": args.seconds,
        "protocols": {
            "iou_uniform": "100k points uniform in the padded cube [-0.55, 0.55]^3 (mesh normalised to [-0.5, 0.5]^3)",
            "iou_grid_128": "all points of a 128^3 grid spanning the padded cube",
            "chamfer_l1": "100k surface samples per mesh, mean nearest distance averaged both ways, unit-cube units",
            "normal_consistency": "mean |cos| of face normals of nearest surface samples, both ways",
        },
    })
    for name in names:
        preset, spec = CONFIGS[name]
        if args.omega and spec.startswith("sine"):
            spec += f"@{args.omega:g}"
        overrides = {"mesh": str(mesh), "spec": spec, "steps": None, "time_budget_s": args.seconds,
                     "threads": args.threads}
        config = overlay(load_preset(preset), overrides, f"benchmark config {name}")
        run_dir = create_run_dir(ROOT / "outputs" / "bench", "occupancy", mesh.stem, name)
        print(f"== {name}: {config.spec} {config.activation} -> {run_dir}", flush=True)
        load_start = os.getloadavg()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        run_dir, metrics = train_occupancy(config, run_dir=run_dir, progress=True)
        metrics = committed_keys(metrics)
        report["runs"][name] = {
            **metrics,
            "date": started,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "machine": machine_info(),
            "run_dir": str(run_dir.relative_to(ROOT)),
        }
        write_json(output, report)
        print(json.dumps({k: metrics[k] for k in ("iou_uniform", "iou_grid_128", "chamfer_l1", "steps")
                          if k in metrics}), flush=True)
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
