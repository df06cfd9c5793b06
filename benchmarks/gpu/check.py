"""One GPU check: the CUDA tests, lego on the gpu preset (sine rank 1 and dense) through nerfacc, and
the fused sine layer timed against the torch path and dense cuBLAS; one JSON under
benchmarks/results/gpu/.

    python benchmarks/gpu/check.py                         # or: make gpu-check
    python benchmarks/gpu/check.py --parts bench --out-dir /tmp/gpu-check

Parts (`--parts`, default all, in this order):
  setup  the GPU computes; nerfacc's CUDA extension loads (built with nvcc on first use: minutes on
         a fresh machine, timed here so that it does not land in a timed part); a fused kernel
         compiles and runs through Triton.
  tests  `pytest -m cuda` in a subprocess: the suite's CUDA tests (kernels against the float64
         reference, layer dispatch, peak memory, nerfacc against the dense reference, NeRF and
         occupancy training on the GPU).
  bench  the fused sine layer (fused.sine_lowrank_linear), the torch path (W materialised, then
         F.linear) and dense nn.Linear at (in, out) = 256^2, 1024^2, 4096^2, ranks 1, 8, 32,
         batch 65,536 (and 8,192 for 4096^2): median forward and forward+backward times (CUDA
         events) and the peak memory a forward+backward allocates; in --bench-dtype under autocast
         (float16 by default, what NeRF training uses on CUDA).
  train  lego with the gpu preset (nerfacc OccGridEstimator + nerfacc rendering, fp16 autocast,
         full resolution) for each of --specs (sine:1 and dense), --train-seconds of training each
         after a few untimed warm-up steps (they compile and autotune the kernels), the test PSNR
         of 16,384 fixed test pixels every --curve-every training seconds, and at the end the
         PSNR / SSIM of --test-views full test views with a render of the first one.

Sized for about 8 minutes on one H100 (2 x 180 s of training, the rest estimated at ~2 minutes, not
yet measured; every part's wall time is recorded). Where one command may run at most 10 minutes,
`--parts setup,tests,bench` and `--parts train` can run as two commands (two JSON files), and
`--train-seconds` shortens the runs (the 3-minute PSNR target is then not judged). Each part runs in its own try block, as does each spec and each bench
shape: a failure is recorded with its traceback and the rest still runs. The JSON is rewritten
after every part, so an interrupted check keeps what it finished; its path is printed at the
end. Exit code 1 when a part failed, else 0. Without a CUDA GPU every part is recorded as skipped
with the reason (exit 0). Targets are judged only from numbers measured in this run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from machine import machine_info  # noqa: E402

PARTS = ("setup", "tests", "bench", "train")
BENCH_SHAPES = [  # (in, out, batch)
    (256, 256, 65536), (1024, 1024, 65536), (4096, 4096, 65536), (4096, 4096, 8192),
]
BENCH_RANKS = (1, 8, 32)
BENCH_OMEGA = 100.0
DATA_CANDIDATES = (REPO / "data" / "nerf_synthetic", REPO.parent / "shared" / "data" / "nerf_synthetic",
                   REPO / "shared" / "data" / "nerf_synthetic")
TARGET_FORWARD_RATIO = 1.1
TARGET_DENSE_PSNR = 28.0
WARMUP_STEPS = 8
DEVICE = "cuda"
"""Where the bench and train parts run (a module constant so that a CPU dry run can swap it)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), type=_parts,
                        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results" / "gpu",
                        help="where the JSON and the renders go (default benchmarks/results/gpu)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding lego (default: the first of data/nerf_synthetic, "
                             "../shared/data/nerf_synthetic, shared/data/nerf_synthetic that exists)")
    parser.add_argument("--scene", default="lego")
    parser.add_argument("--specs", default="sine:1,dense", type=_specs, help="layer specs to train, comma-separated")
    parser.add_argument("--train-seconds", type=_positive(float), default=180.0, help="training seconds per spec")
    parser.add_argument("--curve-every", type=_positive(float), default=30.0,
                        help="training seconds between test-pixel PSNR points")
    parser.add_argument("--curve-pixels", type=_positive(int), default=16384)
    parser.add_argument("--test-views", type=_positive(int), default=4,
                        help="full test views scored (and rendered) at the end of each run")
    parser.add_argument("--bench-repeats", type=_positive(int), default=10)
    parser.add_argument("--bench-dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--tests-timeout", type=_positive(float), default=300.0, help="seconds for pytest -m cuda")
    return parser.parse_args(argv)


def _parts(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown part {unknown[0]!r}" if unknown else "no part named")
    return tuple(name for name in PARTS if name in names)


def _specs(text: str) -> tuple[str, ...]:
    from neuralfields.layers.spec import LayerSpec

    specs = tuple(item.strip() for item in text.split(",") if item.strip())
    for spec in specs:
        try:
            LayerSpec.parse(spec)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not specs:
        raise argparse.ArgumentTypeError("no layer spec named")
    return specs


def _positive(kind):
    def check(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    check.__name__ = kind.__name__
    return check


# ---------------------------------------------------------------------------------------------
# Record keeping


def versions() -> dict:
    """The GPU, its driver, CUDA and the libraries this check exercises (None where absent)."""
    cuda = torch.cuda.is_available()
    info = {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "driver": _driver_version(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for name in ("triton", "nerfacc", "tinycudann"):
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    info["git_commit"] = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    info["git_dirty"] = None if status is None else bool(status)
    return info


def _driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def write_record(path: Path, record: dict) -> None:
    """Write the JSON atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def no_cuda_reason() -> str | None:
    if torch.cuda.is_available():
        return None
    return (f"no CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda})")


# ---------------------------------------------------------------------------------------------
# Part 0: set-up


def part_setup(args: argparse.Namespace, out_dir: Path, stamp: str) -> dict:
    from neuralfields.layers import fused

    result = {"nvcc": shutil.which("nvcc")}
    a = torch.randn(256, 256, device=DEVICE)
    result["matmul_ok"] = bool(torch.allclose((a @ a).cpu(), a.cpu() @ a.cpu(), rtol=1e-3, atol=1e-2))
    started = time.perf_counter()
    try:
        backend = importlib.import_module("nerfacc.cuda._backend")
        result["nerfacc_extension"] = "loaded" if getattr(backend, "_C", None) is not None else "missing"
    except Exception as exc:  # noqa: BLE001
        result["nerfacc_extension"] = f"failed: {type(exc).__name__}: {exc}"
    result["nerfacc_load_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    try:
        x = torch.randn(5, 3, device=DEVICE)
        U, V = torch.randn(4, 1, device=DEVICE), torch.randn(3, 1, device=DEVICE)
        y = fused.sine_matmul(x, V, U, None, 1.0, 1.0, config=(64, 64, 32, 4, 3))
        expected = x @ torch.sin(U @ V.T).T
        result["fused_kernel"] = "ok" if torch.allclose(y, expected, atol=1e-5) else "wrong result"
    except Exception as exc:  # noqa: BLE001
        result["fused_kernel"] = f"failed: {type(exc).__name__}: {exc}"
    result["fused_first_launch_seconds"] = round(time.perf_counter() - started, 1)
    problems = [f"{key}: {result[key]}" for key, good in (("matmul_ok", True), ("nerfacc_extension", "loaded"),
                                                           ("fused_kernel", "ok")) if result[key] != good]
    if problems:
        hint = "" if result["nvcc"] else " (no nvcc: nerfacc builds its CUDA extension with a CUDA toolkit)"
        raise PartFailed("; ".join(problems) + hint, result)
    return result


# ---------------------------------------------------------------------------------------------
# Part 1: the CUDA tests


def part_tests(args: argparse.Namespace, out_dir: Path, stamp: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("TRITON_INTERPRET", "NEURALFIELDS_FUSED")}
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.tests_timeout)
    output = done.stdout + done.stderr
    counts = {kind: int(match.group(1)) if (match := re.search(rf"(\d+) {kind}", output)) else 0
              for kind in ("passed", "failed", "skipped", "error", "deselected")}
    failures = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
    result = {"command": " ".join(command[1:]), "returncode": done.returncode, "counts": counts,
              "failures": failures, "output_tail": output[-6000:]}
    if done.returncode != 0 or counts["passed"] == 0:
        raise PartFailed(f"pytest -m cuda exited {done.returncode}: {counts}; failing: {failures[:10]}", result)
    return result


def report_partial(result: dict) -> None:
    """Parts call this with what they have so far (after each bench shape, each training run); main
    points it at the record, so that a check stopped mid-part keeps the finished pieces."""


class PartFailed(Exception):
    """A part that ran but failed: its partial result goes into the record with the message."""

    def __init__(self, message: str, result: dict) -> None:
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------------------------------------
# Part 2: the layer benchmark


def _sync() -> None:
    if torch.device(DEVICE).type == "cuda":
        torch.cuda.synchronize()


def time_cuda(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds of fn() measured with CUDA events (kernels run asynchronously: the clock alone
    would time their launches only); the plain clock off CUDA."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        if torch.device(DEVICE).type != "cuda":
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def peak_bytes(fn) -> int | None:
    """Bytes fn() allocates at its peak on top of what was allocated before it (CUDA only)."""
    if torch.device(DEVICE).type != "cuda":
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def bench_shape(n_in: int, n_out: int, batch: int, ranks, repeats: int, dtype: torch.dtype) -> dict:
    """Forward and forward+backward of dense nn.Linear and, per rank, of the fused and torch paths."""
    import torch.nn.functional as F

    from neuralfields.layers import fused
    from neuralfields.layers.linear import SineLowRankLinear

    device = torch.device(DEVICE)
    autocast = dtype != torch.float32
    torch.manual_seed(0)
    x = torch.randn(batch, n_in, device=device, dtype=dtype, requires_grad=True)
    grad_y = torch.randn(batch, n_out, device=device, dtype=dtype)

    def measure(forward, params) -> dict:
        def fwd():
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                forward(x)

        def fwd_bwd():
            for tensor in (x, *params):
                tensor.grad = None
            with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                y = forward(x)
            y.backward(grad_y)

        fwd_bwd()  # compiles / autotunes before anything is timed
        return {"forward_s": time_cuda(fwd, repeats), "forward_backward_s": time_cuda(fwd_bwd, repeats),
                "forward_backward_peak_bytes": peak_bytes(fwd_bwd)}

    dense = torch.nn.Linear(n_in, n_out, device=device)
    result = {"in": n_in, "out": n_out, "batch": batch, "dtype": str(dtype).removeprefix("torch."),
              "dense": measure(dense, list(dense.parameters())), "ranks": {}}
    del dense
    for rank in ranks:
        try:
            layer = SineLowRankLinear(n_in, n_out, rank, omega=BENCH_OMEGA).to(device)
            params = list(layer.parameters())

            def fused_path(inp, layer=layer):
                return fused.sine_lowrank_linear(inp, layer.U, layer.V, layer.bias, layer.omega, layer.scale)

            def torch_path(inp, layer=layer):
                return F.linear(inp, layer.weight_matrix(), layer.bias)

            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                probe = x[:4096]
                agreement = ((fused_path(probe).float() - torch_path(probe).float()).abs().max()
                             / torch_path(probe).float().abs().max()).item()
            entry = {"fused": measure(fused_path, params), "torch": measure(torch_path, params),
                     "fused_vs_torch_max_relative_difference": agreement}
            entry["fused_forward_over_dense"] = entry["fused"]["forward_s"] / result["dense"]["forward_s"]
            entry["fused_forward_backward_over_dense"] = (entry["fused"]["forward_backward_s"]
                                                          / result["dense"]["forward_backward_s"])
            entry["torch_forward_backward_over_dense"] = (entry["torch"]["forward_backward_s"]
                                                          / result["dense"]["forward_backward_s"])
            peaks = entry["torch"]["forward_backward_peak_bytes"], entry["fused"]["forward_backward_peak_bytes"]
            entry["peak_saved_bytes"] = peaks[0] - peaks[1] if None not in peaks else None
            entry["w_and_grad_bytes_fp32"] = 8 * n_in * n_out
            result["ranks"][str(rank)] = entry
        except Exception as exc:  # noqa: BLE001 - one rank's failure (e.g. out of memory) is recorded
            result["ranks"][str(rank)] = {"error": f"{type(exc).__name__}: {exc}",
                                          "traceback": traceback.format_exc()[-3000:]}
        finally:
            torch.cuda.empty_cache()
    return result


def part_bench(args: argparse.Namespace, out_dir: Path, stamp: str) -> dict:
    from neuralfields.layers import fused

    if not fused.fused_available(torch.zeros(1, device=DEVICE)):
        raise RuntimeError(f"the fused path is unavailable: Triton {fused.TRITON_ERROR or 'imports'}, "
                           f"{fused.ENV_SWITCH}={os.environ.get(fused.ENV_SWITCH, '(unset)')}")
    dtype = getattr(torch, args.bench_dtype)
    results, errors = [], []
    for n_in, n_out, batch in BENCH_SHAPES:
        try:
            entry = bench_shape(n_in, n_out, batch, BENCH_RANKS, args.bench_repeats, dtype)
            results.append(entry)
            report_partial({"results": results})
            for line in bench_lines(entry):
                print(line, flush=True)
        except Exception as exc:  # noqa: BLE001 - one shape's failure is recorded, the others still run
            errors.append({"shape": [n_in, n_out, batch], "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()[-3000:]})
        finally:
            torch.cuda.empty_cache()
    record = {"omega": BENCH_OMEGA, "dtype": args.bench_dtype, "repeats": args.bench_repeats, "results": results,
              "errors": errors, "tuned_configs": fused.tuned_configs()}
    failed_ranks = [(r["in"], r["out"], r["batch"], rank) for r in results for rank, e in r["ranks"].items()
                    if "error" in e]
    if errors or failed_ranks:
        raise PartFailed(f"{len(errors)} shape(s) and {len(failed_ranks)} rank(s) failed", record)
    return record


# ---------------------------------------------------------------------------------------------
# Part 3: lego on the gpu preset


def find_data_dir(data_dir: Path | None, scene: str) -> Path:
    if data_dir is not None:
        return data_dir
    for candidate in DATA_CANDIDATES:
        if (candidate / scene).is_dir():
            return candidate
    tried = ", ".join(str(candidate / scene) for candidate in DATA_CANDIDATES)
    raise FileNotFoundError(f"scene {scene!r} not found (tried {tried}); pass --data-dir")


def part_train(args: argparse.Namespace, out_dir: Path, stamp: str) -> dict:
    from bench_nerf_cpu import SubsetCurve

    from neuralfields.config import overlay
    from neuralfields.data.scenes import load_views, resolve_scene_dir
    from neuralfields.layers.counting import parameter_report
    from neuralfields.layers.fused import layer_path_description
    from neuralfields.training.loop import Callback, TrainingLoop
    from neuralfields.training.nerf import NerfTask, evenly_spaced, load_preset

    device = torch.device(DEVICE)
    data_dir = find_data_dir(args.data_dir, args.scene)
    base = load_preset("gpu")
    scene_dir = resolve_scene_dir(args.scene, str(data_dir))
    started = time.perf_counter()
    train_views = load_views(scene_dir, "train", base.downscale, base.background)
    test_views = load_views(scene_dir, "test", base.downscale, base.background)
    load_seconds = time.perf_counter() - started

    class FirstStep(Callback):
        seconds: float | None = None

        def on_step(self, loop, stats):
            if loop.step == 1:
                self.seconds = loop.train_seconds

    runs, errors = {}, {}
    for spec in args.specs:
        try:
            config = overlay(base, {
                "scene": args.scene, "data_dir": str(data_dir), "spec": spec, "device": DEVICE,
                "steps": None, "time_budget_s": args.train_seconds, "test_views": args.test_views,
                "video_frames": 0, "checkpoint_every": 10**9,
            }, "gpu check")
            warm = time.perf_counter()
            warmup_task = NerfTask(config, device, train_views)
            for step in range(WARMUP_STEPS):  # compiles and autotunes (fused kernels, nerfacc) untimed
                warmup_task.train_step(step, config.lr)
            _sync()
            warmup_seconds = time.perf_counter() - warm
            del warmup_task
            task = NerfTask(config, device, train_views)
            layer_path = layer_path_description(task.field, device)
            print(f"{spec}: {layer_path}; sampling: {task.path.name}; precision: {task.precision}", flush=True)
            curve = SubsetCurve(test_views, args.curve_pixels, args.curve_every)
            curve.rays_o, curve.rays_d = curve.rays_o.to(device), curve.rays_d.to(device)
            first = FirstStep()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with tempfile.TemporaryDirectory(prefix="gpu-check-") as run_dir:
                loop = TrainingLoop(task, Path(run_dir), callbacks=(first, curve), progress=False)
                loop.train()
                peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
                indices = evenly_spaced(len(test_views), args.test_views)
                renders = Path(run_dir) / "test"
                final = task.evaluate_views(test_views, indices, renders, progress=False)
                label = spec.replace(":", "-k").replace("@", "-omega")
                first_render = renders / f"{Path(test_views.names[indices[0]]).name}.png"
                kept = out_dir / f"check_{stamp}_{label}_{first_render.name}"
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(first_render, kept)
            report = parameter_report(task.field)
            runs[spec] = {
                "spec": str(config.spec), "layer_path": layer_path, "sampling": task.path.name,
                "precision": task.precision, "parameters": report["parameters"],
                "dense_parameters": report["dense_parameters"], "train_budget_s": args.train_seconds,
                "train_seconds": round(loop.train_seconds, 1), "steps": loop.step,
                "steps_per_second": round(loop.step / max(loop.train_seconds, 1e-9), 2),
                "warmup_steps": WARMUP_STEPS, "warmup_seconds": round(warmup_seconds, 1),
                "first_step_seconds": round(first.seconds, 3) if first.seconds is not None else None,
                "peak_memory_gib": round(peak / 2**30, 2) if peak is not None else None,
                "curve_definition": f"PSNR of the pooled MSE over {args.curve_pixels} fixed random pixels of the "
                                    f"{len(test_views)} test views, every {args.curve_every:g} training seconds",
                "curve": curve.points,
                "test_psnr": final["psnr"], "test_ssim": final["ssim"],
                "test_views_scored": [Path(test_views.names[i]).name for i in indices],
                "test_per_view": final["per_view"], "render": kept.name,
                "resolution": [test_views.height, test_views.width],
            }
        except Exception as exc:  # noqa: BLE001 - one run's failure is recorded, the next still runs
            errors[spec] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        finally:
            torch.cuda.empty_cache()
        report_partial({"runs": runs, "errors": errors})
    record = {"scene": args.scene, "data_dir": str(data_dir), "preset": "gpu", "load_seconds": round(load_seconds, 1),
              "runs": runs, "errors": errors}
    if errors:
        raise PartFailed(f"training failed for {', '.join(errors)}", record)
    return record


# ---------------------------------------------------------------------------------------------
# Summary lines and targets (pure functions of the record: tested on the CPU)


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def bench_lines(entry: dict) -> list[str]:
    shape = f"{entry['batch']}x{entry['in']}->{entry['out']} {entry['dtype']}"
    dense = entry["dense"]
    lines = [f"bench {shape} dense: fwd {1e3 * dense['forward_s']:.3f} ms, fwd+bwd "
             f"{1e3 * dense['forward_backward_s']:.3f} ms, peak {_mib(dense['forward_backward_peak_bytes'])} MiB"]
    for rank, e in entry["ranks"].items():
        if "error" in e:
            lines.append(f"bench {shape} sine:{rank}: FAILED {e['error']}")
            continue
        f, t = e["fused"], e["torch"]
        lines.append(
            f"bench {shape} sine:{rank}: fwd fused {1e3 * f['forward_s']:.3f} / torch {1e3 * t['forward_s']:.3f} ms "
            f"(fused {e['fused_forward_over_dense']:.2f}x dense); fwd+bwd fused {1e3 * f['forward_backward_s']:.3f} / "
            f"torch {1e3 * t['forward_backward_s']:.3f} ms ({e['fused_forward_backward_over_dense']:.2f}x dense); "
            f"peak fused {_mib(f['forward_backward_peak_bytes'])} / torch {_mib(t['forward_backward_peak_bytes'])} MiB")
    return lines


def train_lines(train: dict) -> list[str]:
    lines = []
    for spec, run in train.get("runs", {}).items():
        curve = ", ".join(f"{p['train_seconds']:.0f}s {p['subset_psnr']:.2f}" for p in run["curve"])
        lines.append(f"train {spec}: test PSNR {run['test_psnr']:.2f} dB, SSIM {run['test_ssim']:.3f} "
                     f"({len(run['test_views_scored'])} full views) after {run['train_seconds']:.0f} s, "
                     f"{run['steps']} steps; test-pixel curve [{curve}]")
    for spec, error in train.get("errors", {}).items():
        lines.append(f"train {spec}: FAILED {error['error']}")
    return lines


def targets(record: dict) -> list[dict]:
    """The issue's GPU targets, judged from this run's measurements (met: None when not measured)."""
    parts = record.get("parts", {})
    found = []
    bench = parts.get("bench", {}).get("result") or {}
    entry = next((e for r in bench.get("results", []) if (r["in"], r["out"], r["batch"]) == (4096, 4096, 65536)
                  for rank, e in r["ranks"].items() if rank == "8" and "error" not in e), None)
    found.append({
        "target": f"fused forward <= {TARGET_FORWARD_RATIO}x dense cuBLAS at 4096x4096, rank 8, batch 65536",
        "measured": round(entry["fused_forward_over_dense"], 3) if entry else None,
        "met": entry["fused_forward_over_dense"] <= TARGET_FORWARD_RATIO if entry else None,
    })
    saved = entry["peak_saved_bytes"] if entry else None
    found.append({
        "target": "fused forward+backward peak memory below the torch path's by >= W + dW (fp32) at 4096x4096, "
                  "rank 8, batch 65536",
        "measured": {"saved_mib": round(saved / 2**20, 1),
                     "w_and_grad_mib": round(entry["w_and_grad_bytes_fp32"] / 2**20, 1)} if saved is not None else None,
        "met": saved >= entry["w_and_grad_bytes_fp32"] if saved is not None else None,
    })
    dense = (parts.get("train", {}).get("result") or {}).get("runs", {}).get("dense")
    found.append({
        "target": f"lego gpu preset, dense, test PSNR > {TARGET_DENSE_PSNR:g} dB after 3 minutes",
        "measured": round(dense["test_psnr"], 2) if dense else None,
        "met": (dense["test_psnr"] > TARGET_DENSE_PSNR if dense["train_budget_s"] >= 180 else None) if dense else None,
    })
    return found


def summary_lines(record: dict) -> list[str]:
    lines = []
    for name, part in record.get("parts", {}).items():
        head = f"{name}: {part['status']} ({part.get('seconds', 0):.0f} s)"
        if part["status"] == "skipped":
            lines.append(f"{head}: {part['reason']}")
            continue
        if part["status"] == "failed":
            lines.append(f"{head}: {part['error']}")
        result = part.get("result") or {}
        if name == "setup" and result:
            lines.append(f"setup: nerfacc extension {result['nerfacc_extension']} ({result['nerfacc_load_seconds']:.0f} s), "
                         f"fused kernel {result['fused_kernel']} ({result['fused_first_launch_seconds']:.0f} s), "
                         f"nvcc {result['nvcc']}")
        if name == "tests" and result:
            lines.append(f"tests: {result['counts']}" + (f", failing {result['failures']}" if result["failures"] else ""))
        if name == "bench":
            for entry in result.get("results", []):
                lines.extend(bench_lines(entry))
        if name == "train":
            lines.extend(train_lines(result))
    for target in record.get("targets", []):
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        lines.append(f"target: {target['target']}: {verdict}" +
                     (f" (measured {target['measured']})" if target["measured"] is not None else ""))
    return lines


# ---------------------------------------------------------------------------------------------


PART_FUNCTIONS = {"setup": part_setup, "tests": part_tests, "bench": part_bench, "train": part_train}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    out_dir = args.out_dir
    path = out_dir / f"check_{stamp}.json"
    wall = time.perf_counter()
    record = {
        "check": "gpu (benchmarks/gpu/check.py)", "started_utc": now.isoformat(timespec="seconds"),
        "args": {key: list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
                 for key, value in vars(args).items()},
        "versions": versions(), "machine": machine_info(), "parts": {},
    }
    reason = no_cuda_reason()
    global report_partial
    for name in args.parts:
        started = time.perf_counter()

        def report_partial(result: dict, name=name, started=started) -> None:
            record["parts"][name] = {"status": "running (partial result)", "result": result,
                                     "seconds": round(time.perf_counter() - started, 1)}
            write_record(path, record)

        if reason is not None:
            part = {"status": "skipped", "reason": reason}
        else:
            print(f"== {name}", flush=True)
            try:
                part = {"status": "ok", "result": PART_FUNCTIONS[name](args, out_dir, stamp)}
            except PartFailed as exc:
                part = {"status": "failed", "error": str(exc), "result": exc.result}
            except Exception as exc:  # noqa: BLE001 - recorded; the next part still runs
                part = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()[-4000:]}
        part["seconds"] = round(time.perf_counter() - started, 1)
        record["parts"][name] = part
        record["wall_seconds"] = round(time.perf_counter() - wall, 1)
        write_record(path, record)
    record["targets"] = targets(record)
    record["summary"] = summary_lines(record)
    record["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record["wall_seconds"] = round(time.perf_counter() - wall, 1)
    write_record(path, record)
    print("\n".join(record["summary"]))
    print(f"wrote {path}")
    return 1 if any(part["status"] == "failed" for part in record["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
