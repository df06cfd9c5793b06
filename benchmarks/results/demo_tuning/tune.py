"""Demo-preset tuning runs (make demo): scripts/train_nerf.py on the demo scene, one at a time,
--threads 1, a step budget; appends one JSON line per run to runs.jsonl (settings, steps,
train seconds, the process's CPU seconds (user + sys: load-independent, unlike wall seconds, with
--threads 1), final val PSNR, test PSNR, load average before and after).

    python benchmarks/results/demo_tuning/tune.py NAME STEPS [--preset P] [train_nerf args...]
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def main() -> None:
    name, steps, *extra = sys.argv[1:]
    preset = "demo"
    if extra[:1] == ["--preset"]:
        preset, extra = extra[1], extra[2:]
    out = ROOT / "outputs" / "demo_tuning" / name
    command = [str(ROOT / ".venv/bin/python"), "scripts/train_nerf.py", "--scene", "demo", "--preset", preset,
               "--steps", steps, "--threads", "1", "--output-root", str(out),
               "--set", "video_frames=0", "--set", f"val_every={steps}", "--set", f"checkpoint_every={steps}", *extra]
    load_before = os.getloadavg()
    started = time.time()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    log = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    load_after = os.getloadavg()
    if log.returncode:
        print(log.stdout[-2000:], log.stderr[-2000:])
        raise SystemExit(log.returncode)
    run_dir = sorted(out.glob("demo/*/*"))[-1]  # the newest: a name may be reused for another step count
    metrics = json.loads((run_dir / "metrics.json").read_text())
    val = [line for line in log.stdout.splitlines() if "val_psnr" in line]
    record = {"name": name, "preset": preset, "args": extra, "spec": metrics["spec"],
              "parameters": metrics["parameters"], "steps": metrics["steps"],
              "train_seconds": metrics["train_seconds"], "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
              "val_psnr": float(val[-1].split()[-1]) if val else None,
              "test_psnr": round(metrics["test_psnr"], 2), "test_ssim": round(metrics["test_ssim"], 3),
              "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
              "run_dir": str(run_dir.relative_to(ROOT))}
    with open(HERE / "runs.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
