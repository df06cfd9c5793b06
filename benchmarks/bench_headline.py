"""Time the headline command end to end: `python scripts/train_nerf.py --scene lego --rank 1`.

Runs the command as a user would (a fresh process: imports, data loading, training with the cpu
preset, test evaluation, orbit video) and records its wall time next to the run's metrics.json:

    flock /tmp/neuralfields-bench.lock .venv/bin/python benchmarks/bench_headline.py \
        --data-dir ../shared/data/nerf_synthetic

Target (issue 3): at most 15 minutes on 2 CPU cores.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from neuralfields.storage import write_json

from machine import machine_info

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/nerf_synthetic")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "headline_cpu.json")
    args = parser.parse_args()

    started_at = machine_info()
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "scripts/train_nerf.py", "--scene", "lego", "--rank", "1",
                   "--data-dir", str(Path(args.data_dir).resolve()), "--output-root", output]
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True)
        wall = time.perf_counter() - start
        (metrics_path,) = Path(output).glob("lego/*/*/metrics.json")
        metrics = json.loads(metrics_path.read_text())
    result = {
        "benchmark": "headline_cpu", "command": "python scripts/train_nerf.py --scene lego --rank 1",
        "wall_seconds": round(wall, 1), "target_seconds": 900, "metrics": metrics,
        "machine_start": started_at, "machine_end": {"loadavg_1_5_15": list(os.getloadavg())},
    }
    write_json(args.out, result)
    print(f"headline command: {wall:.0f} s end to end, test PSNR {metrics['test_psnr']:.2f} dB -> {args.out}")


if __name__ == "__main__":
    main()
