"""Copy a finished rate-distortion sweep into benchmarks/results/rd/ small enough to commit.

    python benchmarks/publish_rd.py outputs/rd/nerf-lego-cpu benchmarks/results/rd/nerf-lego

Kept: the sweep's own files (sweep.json, report.md, results.csv/json, plots/, probe/lr.json and each
probe run's metrics.json) and, per run, what `rate_distortion.py report` reads to redraw everything:
config.yaml, metrics.json, rd.json, failed.txt, normalization.json, the latest checkpoint's weights
(no optimiser state) and, for NeRF, the first scored test view. Only finished and failed runs are
copied: a run still training or interrupted could not be resumed from the copy, so the published
report lists it as pending (continue the source sweep, then publish again). The published folder is
then re-reported in place, so its report.md is generated from exactly what is committed.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from neuralfields import storage
from neuralfields.cli import run_cli
from neuralfields.errors import NeuralFieldsError
from neuralfields.reports.report import write_report
from neuralfields.reports.sweep import (
    FAILED_FILE, LR_FILE, PROBE_DIR, RD_FILE, RUNS_DIR, SWEEP_FILE, read_sweep, run_status,
)
from neuralfields.training.occupancy import NORMALIZATION_FILE

RUN_FILES = (storage.CONFIG_FILE, storage.METRICS_FILE, RD_FILE, FAILED_FILE, NORMALIZATION_FILE)


def copy_if_present(source: Path, destination: Path) -> None:
    if source.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def publish_run(source: Path, destination: Path) -> None:
    for name in RUN_FILES:
        copy_if_present(source / name, destination / name)
    latest = storage.latest_checkpoint(source)
    if latest is not None:
        copy_if_present(latest / storage.MODEL_FILE, destination / latest.relative_to(source) / storage.MODEL_FILE)
    metrics = source / storage.METRICS_FILE
    if metrics.is_file():
        views = json.loads(metrics.read_text()).get("test_views") or []
        if views:
            name = f"{views[0]['view']}.png"
            copy_if_present(source / "test" / name, destination / "test" / name)


def publish(source: Path, destination: Path) -> list[str]:
    """Copy the sweep `source` to `destination` (which must not exist) and write its report there."""
    read_sweep(source)  # one line when it is not a sweep
    if destination.exists():
        raise NeuralFieldsError(f"{destination} exists: remove it first")
    copy_if_present(source / SWEEP_FILE, destination / SWEEP_FILE)
    copy_if_present(source / PROBE_DIR / LR_FILE, destination / PROBE_DIR / LR_FILE)
    for probe in sorted((source / PROBE_DIR).glob(f"*/{storage.METRICS_FILE}")):
        copy_if_present(probe, destination / probe.relative_to(source))
    for run in sorted((source / RUNS_DIR).iterdir()) if (source / RUNS_DIR).is_dir() else []:
        if run_status(run) in ("finished", "failed"):
            publish_run(run, destination / RUNS_DIR / run.name)
    return write_report(destination)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a sweep folder")
    parser.add_argument("destination", type=Path, help="where the small copy goes (must not exist)")
    args = parser.parse_args()
    failures = publish(args.source, args.destination)
    print(f"published {args.destination} ({sum(f.stat().st_size for f in args.destination.rglob('*') if f.is_file()) / 1e6:.1f} MB)")
    if failures:
        print(f"{len(failures)} failed run(s), marked in the report", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
