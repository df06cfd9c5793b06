"""Rate-distortion sweeps: how much quality each parameter and each stored byte buys, for dense,
low-rank, sine low-rank and adaptive-rank (OIALR) layers, over ranks and widths; then tables, plots
and a report.

    python scripts/rate_distortion.py nerf --scene lego --kinds lowrank,sine --ranks 1,4 --widths 64,256 --budget-s 300
    python scripts/rate_distortion.py occupancy --mesh ../shared/data/meshes/bunny.obj --ranks 1,2,4,8 --budget-s 120
    python scripts/rate_distortion.py occupancy --kinds dense,lowrank,sine,oialr@0.5,oialr@0.8 --budget-s 120
    python scripts/rate_distortion.py nerf --scene lego ... --resume        # continue the newest such sweep
    python scripts/rate_distortion.py report outputs/rd/nerf-lego/<timestamp>   # re-draw from the run folders

Each configuration (kind x rank x width x seed; the low-rank kind with both initialisations; an
equal-size dense network for every rank and width) is an ordinary run folder under
<sweep>/runs/, trained by the task's trainer. A --kinds entry may carry the kind's @ parameter
(oialr@0.5: the line "OIALR (beta 0.5)"). Adaptive-rank kinds (oialr, oialrsine) find their own
rank: they run once per width and seed from minimum rank 1, not at every --ranks value, are placed
at the size the trained run stores, and get plots/oialr_ranks (rank per layer over training); their
warm-up and update interval come from the preset (oialr_warmup_steps, oialr_interval).

Before the main runs, a short learning-rate probe (--lr-probe-s, 0 to skip) picks each line's
rate at each width. --shard I/N runs every N-th configuration (give every shard the same --out;
shard 1 runs the probe); `report` merges whatever run folders exist. The sweep folder (default
<output_root>/rd/<task>-<scene or mesh>/<timestamp>/) gets sweep.json, probe/, runs/, results.csv,
results.json, plots/ and report.md.
"""

import argparse
import sys
from pathlib import Path

from neuralfields.cli import run_cli
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.spec import KINDS
from neuralfields.reports.report import write_report
from neuralfields.reports.sweep import (
    SweepSettings, check_sweep_dir, command_line, find_sweep_to_resume, open_sweep_dir, plan_sweep, run_sweep,
)


def number_list(flag: str, text: str | None, kind: type) -> tuple:
    """Comma-separated numbers of a flag (None: not given, an empty tuple)."""
    try:
        return tuple(kind(item) for item in (text or "").split(",") if item.strip())
    except ValueError:
        raise NeuralFieldsError(f"{flag} must be comma-separated {'whole numbers' if kind is int else 'numbers'}, "
                                f"got {text!r}") from None


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", default="dense,lowrank,sine",
                        help=f"layer kinds, comma-separated (of {', '.join(KINDS)}), each optionally with its @ "
                             f"parameter, one line per entry, e.g. dense,lowrank,sine,oialr@0.5,oialr@0.8 "
                             f"(default dense,lowrank,sine)")
    parser.add_argument("--ranks", default="1,4",
                        help="ranks K of the fixed-rank kinds, comma-separated (default 1,4; adaptive kinds start "
                             "at rank 1 and find their own)")
    parser.add_argument("--widths",
                        help="network widths (NeRF: the trunk's; colour branch half as wide); default: the preset's")
    parser.add_argument("--seeds", default="0", help="seeds (default 0)")
    parser.add_argument("--budget-s", type=float, help="seconds of training per run")
    parser.add_argument("--steps", type=int, help="steps per run (with --budget-s: whichever ends first)")
    parser.add_argument("--lr-probe-s", type=float,
                        help="seconds per learning-rate probe run (0: no probe, the preset's lr; default: a fifth "
                             "of the run budget)")
    parser.add_argument("--lr-probe-steps", type=int, help="steps per learning-rate probe run (0: no probe)")
    parser.add_argument("--probe-lrs",
                        help="learning rates the probe tries (default: the preset's times 1/3, 1, 3)")
    parser.add_argument("--preset", help="the task's preset (NeRF default: auto; occupancy: default) or a YAML path")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the preset's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the preset's)")
    parser.add_argument("--shard", default="1/1", metavar="I/N", help="run every N-th configuration from the I-th")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sweep (--out, else the newest that ran this command): skip finished "
                             "runs, resume interrupted ones; into --out, a command with other kinds, ranks, widths "
                             "or seeds adds its configurations")
    parser.add_argument("--out", type=Path, help="the sweep folder")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    nerf = commands.add_parser("nerf", help="sweep NeRF runs on one scene")
    nerf.add_argument("--scene", default="lego", help="'demo', a scene name under --data-dir, or a scene folder")
    nerf.add_argument("--data-dir", help="folder holding scene folders (default data/nerf_synthetic)")
    add_sweep_args(nerf)
    occupancy = commands.add_parser("occupancy", help="sweep occupancy runs on one mesh")
    occupancy.add_argument("--mesh", type=lambda path: str(Path(path).resolve()),
                           help="mesh file (OBJ, PLY, STL, OFF, GLB); default: the built-in shape")
    add_sweep_args(occupancy)
    report = commands.add_parser("report", help="write the report of a sweep folder from its run folders")
    report.add_argument("sweep_dir", type=Path)
    return parser.parse_args()


def parse_shard(text: str) -> tuple[int, int]:
    index, slash, count = text.partition("/")
    if not slash or not index.isdigit() or not count.isdigit():
        raise NeuralFieldsError(f"--shard must be I/N with whole numbers, e.g. 2/4, got {text!r}")
    return int(index), int(count)


def settings_from(args: argparse.Namespace) -> SweepSettings:
    return SweepSettings(
        task=args.command, target=args.scene if args.command == "nerf" else args.mesh,
        kinds=tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip()),
        ranks=number_list("--ranks", args.ranks, int), widths=number_list("--widths", args.widths, int),
        seeds=number_list("--seeds", args.seeds, int), budget_s=args.budget_s, steps=args.steps, preset=args.preset,
        data_dir=getattr(args, "data_dir", None), probe_s=args.lr_probe_s, probe_steps=args.lr_probe_steps,
        probe_lrs=number_list("--probe-lrs", args.probe_lrs, float), device=args.device, threads=args.threads)


def finish(failures: list[str], sweep_dir: Path) -> None:
    print(f"report: {sweep_dir / 'report.md'}")
    if failures:
        raise NeuralFieldsError(f"{len(failures)} run(s) failed, marked in the report: {failures[0]}")


def main() -> None:
    args = parse_args()
    if args.command == "report":
        finish(write_report(args.sweep_dir), args.sweep_dir)
        return
    shard = parse_shard(args.shard)
    plan = plan_sweep(settings_from(args))
    sweep_dir = args.out
    if args.resume and sweep_dir is None:
        sweep_dir = find_sweep_to_resume(plan)
    check_sweep_dir(plan, sweep_dir, shard, args.resume)
    sweep_dir = open_sweep_dir(plan, sweep_dir, command_line(sys.argv))
    print(f"sweep folder: {sweep_dir} ({len(plan.configurations)} configurations"
          + (f", shard {shard[0]}/{shard[1]}" if shard != (1, 1) else "") + ")")
    run_sweep(plan, sweep_dir, shard)
    finish(write_report(sweep_dir), sweep_dir)


if __name__ == "__main__":
    run_cli(main)
