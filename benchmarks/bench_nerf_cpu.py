"""CPU NeRF benchmark on lego at 100x100: quality after a fixed training-time budget, and time to
reach 20 dB with the occupancy grid vs a naive uniform sampler.

One configuration per call (so runs can be scheduled), one JSON each:

    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_nerf_cpu.py --only sine \
        --data-dir /work/shared/data/nerf_synthetic

--only sine | lowrank | dense : 8x256 reference NeRF with sine rank-1 / low-rank rank-1 / dense
layers, occupancy-grid sampling. --only naive: the sine rank-1 model with 64 uniform samples per
ray and no grid. Every run logs a learning curve: every --eval-every training seconds, the PSNR
of the pooled MSE over a fixed random subset of test pixels (--curve-pixels, all 20 test views at
100x100); evaluation time is not counted as training time. Grid runs end with the full test
evaluation (PSNR/SSIM per view, mean) on all test views; the naive run ends with the subset only.
Training runs through the library's TrainingLoop (cpu preset, lr schedule over the budget); its
checkpoints go to a temporary folder and are not kept.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml

from neuralfields.cli import run_cli
from neuralfields.config import overlay, to_mapping
from neuralfields.data.scenes import ViewSet, load_views, resolve_scene_dir
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.spec import SINE_DEFAULT_OMEGA
from neuralfields.metrics import psnr_from_mse
from neuralfields.rendering.cameras import pixel_rays
from neuralfields.rendering.render import render_rays_chunked
from neuralfields.storage import write_json
from neuralfields.training.loop import Callback, TrainingLoop
from neuralfields.training.nerf import NerfTask, load_preset

from machine import machine_info

TARGET_DB = 20.0


def run_specs(omega: float) -> dict:
    sine = f"sine:1@{omega:g}"
    return {
        "sine": {"spec": sine, "sampler": "grid"},
        "lowrank": {"spec": "lowrank:1", "sampler": "grid"},
        "dense": {"spec": "dense", "sampler": "grid"},
        "naive": {"spec": sine, "sampler": "naive"},
    }


class SubsetCurve(Callback):
    """The learning curve: every `every` training seconds and after the last step, the PSNR of the
    pooled MSE over `pixels` fixed random pixels of the test views. The loop counts only its
    train_step calls as training time, so these evaluations do not eat into the budget."""

    def __init__(self, views: ViewSet, pixels: int, every: float) -> None:
        generator = torch.Generator().manual_seed(1234)
        n_pix = views.height * views.width
        flat = torch.randperm(len(views) * n_pix, generator=generator)[:pixels]
        view, pixel = flat // n_pix, flat % n_pix
        self.rays_o, self.rays_d = pixel_rays(views.camtoworlds, pixel % views.width, pixel // views.width, view,
                                              views.focal, views.height, views.width)
        self.colors = views.images.reshape(len(views), n_pix, 3)[view, pixel]
        self.every = every
        self.next_eval = every
        self.points: list[dict] = []
        self.reached_at: float | None = None
        self.eval_seconds = 0.0

    def subset_psnr(self, task: NerfTask) -> float:
        task.field.eval()
        task.path.estimator.eval()
        rgb = render_rays_chunked(task.field, task.path, self.rays_o, self.rays_d, task.settings,
                                  task.config.eval_chunk)["rgb"]
        return psnr_from_mse(((rgb - self.colors) ** 2).mean().item())

    def on_step(self, loop: TrainingLoop, stats: dict) -> None:
        if loop.train_seconds < self.next_eval and loop.progress() < 1.0:
            return
        started = time.perf_counter()
        value = self.subset_psnr(loop.task)
        self.eval_seconds += time.perf_counter() - started
        self.points.append({"train_seconds": round(loop.train_seconds, 1), "step": loop.step,
                            "subset_psnr": round(value, 3), "rays": stats["rays"], "samples": stats["samples"]})
        print(f"  t={loop.train_seconds:6.1f}s step {loop.step:5d} rays/step {loop.task.num_rays:4d} "
              f"samples/ray {stats['samples'] / stats['rays']:.1f} subset PSNR {value:.2f} dB", flush=True)
        if self.reached_at is None and value >= TARGET_DB:
            self.reached_at = loop.train_seconds
        self.next_eval += self.every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", required=True, choices=("sine", "lowrank", "dense", "naive"))
    parser.add_argument("--data-dir", default="../shared/data/nerf_synthetic")
    parser.add_argument("--scene", default="lego")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds")
    parser.add_argument("--eval-every", type=float, default=60.0, help="training seconds between curve points")
    parser.add_argument("--curve-pixels", type=int, default=2048)
    parser.add_argument("--omega", type=float, default=SINE_DEFAULT_OMEGA)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: OpenMP threads stall badly on a shared, busy machine)")
    parser.add_argument("--lr", type=float, help="override the cpu preset's learning rate (the final one "
                                                 "follows: lr * lr_final_ratio)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML",
                        help="extra config overrides for tuning, e.g. render_step_size=0.03")
    parser.add_argument("--skip-final-eval", action="store_true", help="curve only (tuning runs)")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/nerf_cpu_<only>.json)")
    args = parser.parse_args()
    out = args.out or Path(__file__).resolve().parent / "results" / f"nerf_cpu_{args.only}.json"

    overrides = {**run_specs(args.omega)[args.only], "scene": args.scene, "data_dir": args.data_dir,
                 "device": "cpu", "time_budget_s": args.budget, "steps": None, "threads": args.threads}
    if args.lr is not None:
        overrides["lr"] = args.lr
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    config = overlay(load_preset("cpu"), overrides, "command line")
    torch.set_num_threads(config.threads)
    scene_dir = resolve_scene_dir(config.scene, config.data_dir)
    train_views = load_views(scene_dir, "train", config.downscale, config.background)
    test_views = load_views(scene_dir, "test", config.downscale, config.background)
    task = NerfTask(config, torch.device("cpu"), train_views)
    started_at = machine_info()
    print(f"{args.only}: {config.spec}, sampling: {task.path.name}, budget {args.budget:.0f} s")

    curve = SubsetCurve(test_views, args.curve_pixels, args.eval_every)
    wall_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-nerf-") as checkpoints:
        loop = TrainingLoop(task, Path(checkpoints), callbacks=(curve,), progress=False)
        loop.train()  # the budget, schedule and NaN stop of every run; the final evaluation is the benchmark's

    final = None
    if config.sampler == "grid" and not args.skip_final_eval:
        t0 = time.perf_counter()
        final = task.evaluate_views(test_views)
        final["eval_seconds"] = round(time.perf_counter() - t0, 1)
    report = parameter_report(task.field)
    result = {
        "benchmark": "nerf_cpu", "run": args.only, "scene": args.scene, "spec": str(config.spec),
        "sampling": task.path.name, "precision": task.precision,
        "resolution": [test_views.height, test_views.width], "train_budget_s": args.budget,
        "train_seconds": round(loop.train_seconds, 1), "steps": loop.step,
        "parameters": report["parameters"], "dense_parameters": report["dense_parameters"],
        "percent_of_dense": round(report["percent_of_dense"], 3), "bytes_fp32": report["bytes_fp32"],
        "test_psnr": final["psnr"] if final else None, "test_ssim": final["ssim"] if final else None,
        "test_views": len(test_views) if final else 0, "final_eval": final,
        "curve_definition": f"PSNR of pooled MSE over {args.curve_pixels} fixed random pixels of the "
                            f"{len(test_views)} test views, every {args.eval_every:g} training seconds",
        "seconds_to_20db_subset": round(curve.reached_at, 1) if curve.reached_at is not None else None,
        "curve": curve.points, "curve_eval_seconds": round(curve.eval_seconds, 1),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "config": to_mapping(config), "machine_start": started_at,
        "machine_end": {"loadavg_1_5_15": list(os.getloadavg())},
    }
    write_json(out, result)
    summary = f"test PSNR {final['psnr']:.2f} dB" if final else f"subset PSNR {curve.points[-1]['subset_psnr']:.2f} dB"
    print(f"{args.only}: {summary} after {loop.train_seconds:.0f} s, {loop.step} steps; "
          f"20 dB at {curve.reached_at if curve.reached_at is not None else 'not reached'} -> {out}")


if __name__ == "__main__":
    run_cli(main)
