"""Train an occupancy network on a mesh and extract its surface.

    python scripts/train_occupancy.py --rank 1                  # the built-in shape, sine rank 1
    python scripts/train_occupancy.py --mesh my_scan.obj --kind lowrank --rank 2 --time-budget 120
    python scripts/train_occupancy.py --preset relu_pe --kind dense
    python scripts/train_occupancy.py --resume outputs/occupancy/my_scan/sine-k1/<timestamp> --steps 4000
    python scripts/train_occupancy.py --rank 1 --viewer         # watch the surface form in the browser

Without --mesh the embedded procedural shape is used. Presets live in configs/occupancy/
(default, relu_pe). Budget: --steps or --time-budget, whichever ends first; naming only one
lifts the other. Writes <output-root>/occupancy/<mesh-name>/<kind>-k<rank>/<timestamp>/ with
config.yaml, checkpoints, mesh.ply (original coordinates) and metrics.json.
"""

import argparse
import json
import sys
from pathlib import Path

from neuralfields.cli import DEPRECATED_FLAGS, add_run_args, renamed_flags, run_cli, run_overrides
from neuralfields.config import overlay
from neuralfields.training.occupancy import load_preset, train_occupancy
from neuralfields.viewer.cli import add_viewer_args, live_viewer

OCCUPANCY_FLAGS = {"mesh": "mesh", "activation": "activation", "pe_freqs": "pe_freqs", "batch_size": "batch_size",
                   "eval_grid_resolution": "eval_grid_resolution"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=lambda path: str(Path(path).resolve()),
                        help="mesh file (OBJ, PLY, STL, OFF, GLB); default: the built-in shape")
    parser.add_argument("--activation", help="hidden activation: gaussian[:SIGMA], relu or softplus")
    parser.add_argument("--pe-freqs", type=int, help="positional-encoding frequencies (0 = raw xyz)")
    parser.add_argument("--batch-size", type=int, help="points per step")
    parser.add_argument("--eval-grid-resolution", type=int, help="grid for the grid IoU and the extracted mesh")
    add_run_args(parser, "default (the default), relu_pe, or a YAML config path")
    add_viewer_args(parser)
    renames = {**DEPRECATED_FLAGS, "--grid-resolution": "--eval-grid-resolution"}
    return parser.parse_args(renamed_flags(sys.argv[1:], renames))


def main() -> None:
    args = parse_args()
    if args.resume:
        config, resume = run_overrides(args), args.resume
    else:
        base = load_preset(args.preset or "default")
        config, resume = overlay(base, run_overrides(args, base, OCCUPANCY_FLAGS), "command line"), None
    with live_viewer(args) as callbacks:
        run_dir, metrics = train_occupancy(config, resume=resume, callbacks=callbacks)
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=2))


if __name__ == "__main__":
    run_cli(main)
