"""NeRF on a real circling capture: `milk` (43 phone photos around a milk carton, LLFF format, view
directions up to 92 degrees from their mean) at 1/8 resolution on CPU, trained for a fixed budget
with the circling preset (spherified cameras, 4-level occupancy grid, growing steps, contracted
field). One configuration per call, one JSON each, timed runs serialised with the shared lock:

    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_milk.py --only dense --threads 2
    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_milk.py --only sine --threads 2

Evaluation as in the literature for such scenes: every 8th photo held out (6 of 43), PSNR/SSIM on
all of them. Writes results/milk_<name>.json (metrics, steps, the machine and its load: load
averages at start and end and sampled every 10 s during the run, since the development machine is
shared), results/milk/<name>_test_row.png (top: the held-out photos; bottom: the renders) and
results/milk/<name>_orbit.mp4. The run folder itself goes to a temporary folder unless --keep-run.
"""

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from neuralfields.cli import run_cli
from neuralfields.config import overlay, to_mapping
from neuralfields.data.scenes import load_views
from neuralfields.data.images import read_image
from neuralfields.media import save_png
from neuralfields.storage import write_json
from neuralfields.training.nerf import load_preset, train_nerf

from machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nerf_llff_data" / "milk"
RUNS = {"dense": "dense", "sine": "sine:1@100"}


class LoadSampler:
    """os.getloadavg() every `every` seconds on a background thread, for the record."""

    def __init__(self, every: float = 10.0) -> None:
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.time()
        while not self._stop.is_set():
            self.samples.append([round(time.time() - start, 1), *os.getloadavg()])
            self._stop.wait(self.every)

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        one_minute = [sample[1] for sample in self.samples]
        return {"loadavg_1min_mean": float(np.mean(one_minute)), "loadavg_1min_max": float(np.max(one_minute)),
                "samples_t_1_5_15": self.samples}


def test_row(run_dir: Path, scene: Path, downscale: int, out: Path) -> None:
    """The held-out photos (top) above the run's renders of them (bottom), one PNG."""
    views = load_views(scene, "test", downscale, scene_kind="circling")
    renders = [read_image(run_dir / "test" / f"{name}.png")[..., :3] for name in views.names]
    photos = [image.numpy() for image in views.images]
    save_png(out, np.concatenate([np.concatenate(photos, axis=1), np.concatenate(renders, axis=1)], axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(RUNS), required=True)
    parser.add_argument("--spec", help="layer spec instead of the named run's (e.g. sine:5@100); names the output")
    parser.add_argument("--scene", default=str(DEFAULT_SCENE), help="the milk folder (poses_bounds.npy + images/)")
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    parser.add_argument("--out", help="result JSON (default results/milk_<name>.json)")
    parser.add_argument("--keep-run", help="keep the run folder under this output root")
    args = parser.parse_args()

    import yaml

    spec = args.spec or RUNS[args.only]
    name = args.only if not args.spec else spec.replace(":", "").replace("@", "w")
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    output_root = args.keep_run or tempfile.mkdtemp(prefix="bench_milk_")
    config = overlay(load_preset("circling"), {
        "scene": args.scene, "spec": spec, "steps": None, "time_budget_s": args.budget, "threads": args.threads,
        "output_root": output_root, "device": "cpu", **overrides}, "bench_milk")
    start_machine = machine_info()
    with LoadSampler() as load:
        wall = time.time()
        run_dir, metrics = train_nerf(config)
        wall = time.time() - wall
    figures = RESULTS / "milk"
    figures.mkdir(parents=True, exist_ok=True)
    test_row(run_dir, Path(args.scene), config.downscale, figures / f"{name}_test_row.png")
    if metrics.get("video"):
        shutil.copyfile(run_dir / metrics["video"], figures / f"{name}_orbit.mp4")
    result = {
        "benchmark": "milk, circling capture, CPU", "run": name, "config": to_mapping(config),
        "metrics": metrics, "wall_seconds_with_evaluation": wall,
        "machine_start": start_machine, "machine_end": machine_info(), "load_during_run": load.summary(),
        "figures": {"test_row": f"milk/{name}_test_row.png",
                    "orbit": f"milk/{name}_orbit.mp4" if metrics.get("video") else None},
    }
    out = Path(args.out) if args.out else RESULTS / f"milk_{name}.json"
    write_json(out, result)
    print(f"{name}: test PSNR {metrics['test_psnr']:.2f} dB, SSIM {metrics['test_ssim']:.3f}, {metrics['steps']} steps "
          f"in {metrics['train_seconds']:.0f} s; load 1-min mean {load.summary()['loadavg_1min_mean']:.2f}; {out}")
    if not args.keep_run:
        shutil.rmtree(output_root, ignore_errors=True)


if __name__ == "__main__":
    run_cli(main)
