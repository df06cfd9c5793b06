"""Viewer speed on the CPU (issue 12) for a trained lego run (occupancy-grid sampling):

- time to the first image after a tab connects (a scripted tab, viser's websocket protocol),
  and to the first still frame; the first tab separately (cold), then the median of the others;
- render frames/s at 64, 128 and 256 px on the long side, of still frames (the run's evaluation
  settings) and of previews (the frames shown while the camera moves: a longer marching step and
  mixed precision, neuralfields.viewer.frames), each frame from a new camera on an orbit, through
  the viewer's own render call (session.render: the frame, its picture and depth);
- frames a tab receives per second while its camera orbits (20 camera updates/s), at the
  viewer's default sizes.

Targets on 2 CPU cores: first image within 2 s, at least 4 frames/s at 64 px while moving.

    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_viewer.py --steps 300 --threads 2

Without --run it first trains a lego run (cpu preset, --steps steps, one scored test view, no
video) under --train-root; --run RUN_DIR measures an existing NeRF run instead. Writes --out
(default benchmarks/results/viewer/render_cpu.json) and the same name with .md: a table with the
machine and its load averages at start and end. Time it on a quiet machine: other work on the
cores changes every number.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from neuralfields.cli import run_cli
from neuralfields.config import overlay
from neuralfields.errors import NeuralFieldsError
from neuralfields.rendering.cameras import orbit_camtoworlds
from neuralfields.runs import open_run
from neuralfields.storage import write_json
from neuralfields.training.nerf import load_preset, train_nerf
from neuralfields.viewer import open_viewer
from neuralfields.viewer.cameras import ViewCamera, image_size
from neuralfields.viewer.models import wait_until
from neuralfields.viewer.server import free_port
from neuralfields.viewer.tab import TabClient

from machine import machine_info

REPO = Path(__file__).resolve().parents[1]
CANVAS = (600, 600)
"""The tab's canvas (height, width) in pixels: square like lego's views, so the long side is both."""
TIMEOUT_S = 300.0
FIRST_IMAGE_TARGET_S = 2.0
PREVIEW_FPS_TARGET = 4.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="an existing NeRF run folder (default: train one)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "nerf_synthetic",
                        help="folder holding lego (default ../shared/data/nerf_synthetic)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the run trained here")
    parser.add_argument("--train-root", type=Path, default=Path("/tmp/viewer-bench"),
                        help="output root of the run trained here")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2: both cores)")
    parser.add_argument("--sizes", default="64,128,256", help="long sides in pixels, comma-separated")
    parser.add_argument("--frames", type=int, default=5, help="timed frames per size and kind")
    parser.add_argument("--tabs", type=int, default=4, help="tabs that connect one after another (first image)")
    parser.add_argument("--move-s", type=float, default=10.0, help="seconds of orbiting camera (0: skip)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "viewer" / "render_cpu.json")
    return parser.parse_args()


def train_run(args) -> Path:
    config = overlay(load_preset("cpu"), {
        "scene": "lego", "data_dir": str(args.data_dir), "steps": args.steps, "time_budget_s": None,
        "threads": args.threads, "test_views": 1, "video_frames": 0, "output_root": str(args.train_root),
    }, "bench_viewer")
    run_dir, _ = train_nerf(config)
    return run_dir


def orbit(viewer, count: int, aspect: float) -> list[ViewCamera]:
    """`count` cameras on the circle of the run's first test view, its fov, the canvas aspect."""
    first = viewer.scene.first_view
    position = first.camtoworld[:3, 3]
    radius = float(np.linalg.norm(position))
    elevation = math.degrees(math.asin(float(position[2]) / radius))
    return [ViewCamera(pose.numpy().astype(np.float64), first.fov_y, aspect)
            for pose in orbit_camtoworlds(count, radius, elevation)]


def connect(viewer, camera: ViewCamera) -> tuple[TabClient, float, float, tuple[int, int]]:
    """A new tab reporting `camera`: (tab, seconds to its first image, to its first still frame,
    first image's (height, width)). Waits until the tab's render thread is idle."""
    started = time.perf_counter()
    tab = TabClient(viewer.server.get_port())
    tab.send_camera(camera.camtoworld, camera.fov_y, *CANVAS)
    first = tab.wait_backgrounds(1, TIMEOUT_S)[0]
    first_s = time.perf_counter() - started
    assert wait_until(lambda: any(s.last_image is not None for s in viewer.sessions.values()), TIMEOUT_S)
    still_s = time.perf_counter() - started
    return tab, first_s, still_s, first.shape[:2]


def disconnect(viewer, tab: TabClient) -> None:
    tab.close()
    assert wait_until(lambda: viewer.client_count == 0, TIMEOUT_S)


def first_images(viewer, tabs: int) -> dict:
    camera = viewer.scene.first_view.with_aspect(CANVAS[1] / CANVAS[0])
    rows = []
    for _ in range(tabs):
        tab, first_s, still_s, shape = connect(viewer, camera)
        disconnect(viewer, tab)
        rows.append({"first_image_s": round(first_s, 3), "first_still_s": round(still_s, 3),
                     "first_image_px": list(shape)})
        print(f"tab: first image {first_s:.2f} s ({shape[1]}x{shape[0]} px), still frame {still_s:.2f} s", flush=True)
    warm = rows[1:] or rows
    return {"tabs": rows, "cold_first_image_s": rows[0]["first_image_s"],
            "warm_first_image_s": statistics.median(row["first_image_s"] for row in warm),
            "warm_first_still_s": statistics.median(row["first_still_s"] for row in warm)}


def render_rates(viewer, session, sizes: list[int], frames: int) -> list[dict]:
    cameras = orbit(viewer, frames + 1, CANVAS[1] / CANVAS[0])
    rows = []
    for long_side in sizes:
        height, width = image_size(long_side, cameras[0].aspect)
        for preview in (False, True):
            session.render(cameras[0], long_side, lambda: False, preview=preview)  # warm-up, not timed
            times, cpu_seconds = [], 0.0
            for camera in cameras[1:]:
                started, cpu_started = time.perf_counter(), time.process_time()
                session.render(camera, long_side, lambda: False, preview=preview)
                times.append(time.perf_counter() - started)
                cpu_seconds += time.process_time() - cpu_started
            row = {"long_side": long_side, "frame_px": [height, width], "kind": "preview" if preview else "still",
                   "frames": len(times), "seconds": round(sum(times), 3),
                   "frames_per_s": round(len(times) / sum(times), 3), "median_frame_s": round(statistics.median(times), 4),
                   "cpu_seconds": round(cpu_seconds, 3), "frames_per_cpu_s": round(len(times) / cpu_seconds, 3)}
            rows.append(row)
            print(f"{long_side} px {row['kind']}: {row['frames_per_s']:.2f} frames/s, "
                  f"{row['frames_per_cpu_s']:.2f} frames per CPU second", flush=True)
    return rows


def moving_tab(viewer, tab: TabClient, seconds: float) -> dict:
    """Frames a tab receives per second while its camera orbits (20 updates/s)."""
    cameras = orbit(viewer, 360, CANVAS[1] / CANVAS[0])
    before = tab.background_count()
    started = time.perf_counter()
    index = 0
    while time.perf_counter() - started < seconds:
        camera = cameras[index % len(cameras)]
        tab.send_camera(camera.camtoworld, camera.fov_y, *CANVAS)
        index += 1
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    received = tab.background_count() - before
    sizes = sorted({image.shape[1] for image in tab.backgrounds()[before:]})
    return {"seconds": round(elapsed, 2), "camera_updates": index, "frames_received": received,
            "frames_per_s": round(received / elapsed, 3), "frame_widths_px": sizes,
            "preview_long_side": viewer.preview_long_side, "still_long_side": viewer.long_side}


def markdown(result: dict) -> str:
    first, machine = result["first_image"], result["machine"]
    run = result["run"]
    psnr = "not evaluated" if run["test_psnr"] is None else f"{run['test_psnr']:.2f} dB on {run['test_views']} view(s)"
    lines = [
        "# Viewer speed on the CPU (`benchmarks/bench_viewer.py`)", "",
        f"Run: `{run['path']}` ({run['spec']}, step {run['step']}, test PSNR {psnr}, occupancy grid {run['grid_resolution']}^3 with "
        f"{100 * run['grid_occupied']:.1f}% of its cells occupied, marching step {run['render_step_size']}).",
        f"Machine: {machine['processor']}, {machine['cpu_count']} cores, torch {machine['versions']['torch']}, "
        f"{result['threads']} torch threads, {machine['date_utc']}. Load averages (1/5/15 min): start "
        f"{result['loadavg_start']}, end {result['loadavg_end']}.", "",
        "| long side | frame (px) | still frames/s | preview frames/s | still frames per CPU s | "
        "preview frames per CPU s |", "|---|---|---|---|---|---|",
    ]
    for long_side in sorted({row["long_side"] for row in result["frames"]}):
        rate = {row["kind"]: row for row in result["frames"] if row["long_side"] == long_side}
        height, width = rate["still"]["frame_px"]
        lines.append(f"| {long_side} | {width}x{height} | {rate['still']['frames_per_s']:.2f} | "
                     f"{rate['preview']['frames_per_s']:.2f} | {rate['still']['frames_per_cpu_s']:.2f} | "
                     f"{rate['preview']['frames_per_cpu_s']:.2f} |")
    lines += [
        "", "Still frames use the run's evaluation settings; previews (while the camera moves) march twice the "
        "step in mixed precision. Each timed frame is a new camera on an orbit. Frames per CPU second count "
        "the CPU time the process spent (all its threads): with 1 thread it is the rate one idle core gives, "
        "whatever else runs on the machine; frames/s is elapsed time and depends on the load.", "",
        f"First image after a tab connects: {first['cold_first_image_s']:.2f} s for the first tab, "
        f"{first['warm_first_image_s']:.2f} s (median) for the next {len(first['tabs']) - 1}; first still frame "
        f"{first['warm_first_still_s']:.2f} s (median).",
    ]
    if result.get("moving"):
        moving = result["moving"]
        lines.append(f"A tab whose camera orbits ({moving['camera_updates']} updates in {moving['seconds']} s) "
                     f"received {moving['frames_per_s']:.2f} frames/s (defaults: {moving['preview_long_side']} px "
                     f"previews, {moving['still_long_side']} px still frames).")
    targets = result["targets"]
    lines += ["", f"Targets (2 cores): first image within {FIRST_IMAGE_TARGET_S:g} s: "
                  f"{'met' if targets['first_image_met'] else 'not met'}; at least {PREVIEW_FPS_TARGET:g} frames/s "
                  f"at 64 px while moving (previews): "
                  f"{'met' if targets['preview_64_met'] else 'not met' if targets['preview_64_met'] is False else 'not measured'}.",
              ""]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.sizes.split(",")]
    run_dir = args.run or train_run(args)
    run = open_run(run_dir)
    if run.task != "nerf":
        raise NeuralFieldsError(f"{run_dir} is a {run.task} run; the benchmark needs a NeRF run")
    load_start = os.getloadavg()
    machine = machine_info()
    viewer = open_viewer([run_dir], port=free_port(), quiet=True)
    try:
        slot = viewer.slots[0]
        first = first_images(viewer, args.tabs)
        tab, *_ = connect(viewer, viewer.scene.first_view.with_aspect(CANVAS[1] / CANVAS[0]))
        session = next(iter(viewer.sessions.values()))
        frames = render_rates(viewer, session, sizes, args.frames)
        moving = moving_tab(viewer, tab, args.move_s) if args.move_s > 0 else None
        disconnect(viewer, tab)
    finally:
        viewer.close()
    metrics = run.metrics() or {}
    preview_64 = next((row["frames_per_s"] for row in frames if row["long_side"] == 64 and row["kind"] == "preview"),
                      None)
    result = {
        "run": {"path": str(run_dir), "spec": str(run.config.spec), "step": slot.info.get("step"),
                "test_psnr": metrics.get("test_psnr"), "test_views": metrics.get("test_views_scored"),
                "grid_resolution": run.config.grid_resolution, "render_step_size": run.config.render_step_size,
                "grid_occupied": round(float(slot.model.path.estimator.binaries.float().mean()), 4)},
        "threads": args.threads, "canvas_px": list(CANVAS),
        "first_image": first, "frames": frames, "moving": moving,
        "targets": {"first_image_met": first["warm_first_image_s"] <= FIRST_IMAGE_TARGET_S,
                    "preview_64_met": None if preview_64 is None else preview_64 >= PREVIEW_FPS_TARGET},
        "loadavg_start": [round(x, 2) for x in load_start], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "machine": machine,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    args.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    run_cli(main)
