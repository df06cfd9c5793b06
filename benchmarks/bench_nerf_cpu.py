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
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from neuralfields.cli import run_cli  # noqa: E402
from neuralfields.data.blender import load_blender_split, resolve_scene_dir  # noqa: E402
from neuralfields.layers.counting import parameter_report  # noqa: E402
from neuralfields.metrics import psnr_from_mse  # noqa: E402
from neuralfields.rendering.cameras import pixel_rays  # noqa: E402
from neuralfields.rendering.render import render_rays_chunked  # noqa: E402
from neuralfields.training.nerf import NERF_DEFAULT_OMEGA, NerfTrainer, load_preset, merge_config  # noqa: E402
from neuralfields.training.runs import write_json  # noqa: E402

TARGET_DB = 20.0


def run_specs(omega: float) -> dict:
    sine = f"sine:1@{omega:g}"
    return {
        "sine": {"spec": sine, "sampler": "grid"},
        "lowrank": {"spec": "lowrank:1", "sampler": "grid"},
        "dense": {"spec": "dense", "sampler": "grid"},
        "naive": {"spec": sine, "sampler": "naive"},
    }


def curve_psnr(trainer: NerfTrainer, rays_o: torch.Tensor, rays_d: torch.Tensor, colors: torch.Tensor) -> float:
    """PSNR of the pooled MSE over the fixed test-pixel subset."""
    trainer.field.eval()
    trainer.path.estimator.eval()
    rgb = render_rays_chunked(trainer.field, trainer.path, rays_o, rays_d, trainer.settings,
                              trainer.config["eval_chunk"])["rgb"]
    return psnr_from_mse(((rgb - colors) ** 2).mean().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", required=True, choices=("sine", "lowrank", "dense", "naive"))
    parser.add_argument("--data-dir", default="../shared/data/nerf_synthetic")
    parser.add_argument("--scene", default="lego")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds")
    parser.add_argument("--eval-every", type=float, default=60.0, help="training seconds between curve points")
    parser.add_argument("--curve-pixels", type=int, default=2048)
    parser.add_argument("--omega", type=float, default=NERF_DEFAULT_OMEGA)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: OpenMP threads stall badly on a shared, busy machine)")
    parser.add_argument("--lr", type=float, help="override the cpu preset's learning rate")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML",
                        help="extra config overrides for tuning, e.g. render_step_size=0.03")
    parser.add_argument("--skip-final-eval", action="store_true", help="curve only (tuning runs)")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/nerf_cpu_<only>.json)")
    args = parser.parse_args()
    out = args.out or Path(__file__).resolve().parent / "results" / f"nerf_cpu_{args.only}.json"

    overrides = {**run_specs(args.omega)[args.only], "scene": args.scene, "data_dir": args.data_dir,
                 "device": "cpu", "time_budget_s": args.budget, "steps": 10**9, "cpu_threads": args.threads}
    if args.lr is not None:
        overrides["lr"] = args.lr
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    config = merge_config(load_preset("cpu"), overrides)
    scene_dir = resolve_scene_dir(args.scene, args.data_dir)
    train_views = load_blender_split(scene_dir, "train", config["downscale"], config["background"])
    test_views = load_blender_split(scene_dir, "test", config["downscale"], config["background"])
    trainer = NerfTrainer(config, train_views, torch.device("cpu"))
    started_at = machine_info()
    print(f"{args.only}: {config['spec']}, sampling: {trainer.path.name}, budget {args.budget:.0f} s")

    generator = torch.Generator().manual_seed(1234)
    n_pix = test_views.height * test_views.width
    flat = torch.randperm(len(test_views) * n_pix, generator=generator)[: args.curve_pixels]
    view, pixel = flat // n_pix, flat % n_pix
    rays_o, rays_d = pixel_rays(test_views.camtoworlds, pixel % test_views.width, pixel // test_views.width, view,
                                test_views.focal, test_views.height, test_views.width)
    colors = test_views.images.reshape(len(test_views), n_pix, 3)[view, pixel]

    curve, reached_at, eval_seconds = [], None, 0.0
    next_eval = args.eval_every
    wall_start = time.perf_counter()
    while not trainer.finished():
        stats = trainer.train_step()
        if trainer.train_seconds >= next_eval or trainer.finished():
            t0 = time.perf_counter()
            value = curve_psnr(trainer, rays_o, rays_d, colors)
            eval_seconds += time.perf_counter() - t0
            curve.append({"train_seconds": round(trainer.train_seconds, 1), "step": trainer.step,
                          "subset_psnr": round(value, 3), "rays": stats["rays"], "samples": stats["samples"]})
            print(f"  t={trainer.train_seconds:6.1f}s step {trainer.step:5d} rays/step {trainer.num_rays:4d} "
                  f"samples/ray {stats['samples'] / stats['rays']:.1f} subset PSNR {value:.2f} dB", flush=True)
            if reached_at is None and value >= TARGET_DB:
                reached_at = trainer.train_seconds
            next_eval += args.eval_every

    final = None
    if config["sampler"] == "grid" and not args.skip_final_eval:
        t0 = time.perf_counter()
        final = trainer.evaluate(test_views)
        final["eval_seconds"] = round(time.perf_counter() - t0, 1)
    report = parameter_report(trainer.field)
    result = {
        "benchmark": "nerf_cpu", "run": args.only, "scene": args.scene, "spec": config["spec"],
        "sampling": trainer.path.name, "precision": trainer.precision,
        "resolution": [test_views.height, test_views.width], "train_budget_s": args.budget,
        "train_seconds": round(trainer.train_seconds, 1), "steps": trainer.step,
        "parameters": report["parameters"], "dense_parameters": report["dense_parameters"],
        "percent_of_dense": round(report["percent_of_dense"], 3), "bytes_fp32": report["bytes_fp32"],
        "test_psnr": final["psnr"] if final else None, "test_ssim": final["ssim"] if final else None,
        "test_views": len(test_views) if final else 0, "final_eval": final,
        "curve_definition": f"PSNR of pooled MSE over {args.curve_pixels} fixed random pixels of the "
                            f"{len(test_views)} test views, every {args.eval_every:g} training seconds",
        "seconds_to_20db_subset": round(reached_at, 1) if reached_at is not None else None,
        "curve": curve, "curve_eval_seconds": round(eval_seconds, 1),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "config": config, "machine_start": started_at,
        "machine_end": {"loadavg_1_5_15": list(os.getloadavg())},
    }
    write_json(out, result)
    summary = f"test PSNR {final['psnr']:.2f} dB" if final else f"subset PSNR {curve[-1]['subset_psnr']:.2f} dB"
    print(f"{args.only}: {summary} after {trainer.train_seconds:.0f} s, {trainer.step} steps; "
          f"20 dB at {reached_at if reached_at is not None else 'not reached'} -> {out}")


if __name__ == "__main__":
    run_cli(main)
