"""Train an occupancy network on a mesh and extract its surface.

    python scripts/train_occupancy.py --mesh ../shared/data/meshes/armadillo.obj --rank 1
    python scripts/train_occupancy.py --kind lowrank --rank 2 --steps 3000
    python scripts/train_occupancy.py --resume outputs/occupancy/armadillo/sine-k1/<timestamp>

Without --mesh the embedded procedural default shape is used. Writes
outputs/occupancy/<mesh-name>/<spec.label>/<timestamp>/ with config.yaml, checkpoints,
mesh.ply (original coordinates) and metrics.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralfields.cli import add_layer_args, layer_spec_from_args, run_cli  # noqa: E402
from neuralfields.layers.spec import LayerSpec  # noqa: E402
from neuralfields.training.occupancy import (  # noqa: E402
    DEFAULT_OMEGA, load_occupancy_config, mesh_name, resolve_config, train_occupancy,
)
from neuralfields.training.runs import create_run_dir, read_yaml_mapping  # noqa: E402

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[1] / "configs" / "occupancy" / "default.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", help="mesh file (OBJ, PLY, STL, OFF, GLB); default: embedded shape")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_FILE, help="YAML config file")
    add_layer_args(parser, default_kind="sine", default_rank=1)
    parser.add_argument("--activation", help="hidden activation: gaussian[:SIGMA] or relu")
    parser.add_argument("--pe-freqs", type=int, help="positional-encoding frequencies (0 = raw xyz)")
    parser.add_argument("--steps", type=int, help="training steps")
    parser.add_argument("--max-seconds", type=float, help="stop training after this many seconds")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--grid-resolution", type=int, help="grid for IoU and the extracted mesh")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--output-root", type=Path, default=Path("outputs"))
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR (its config; --steps/--max-seconds may extend it)")
    return parser.parse_args()


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Config values given on the command line (unset flags leave the config file's values)."""
    overrides: dict = {"spec": str(layer_spec_from_args(args, DEFAULT_OMEGA))}
    if args.mesh:
        overrides["mesh"] = str(Path(args.mesh).resolve())
    model = {"activation": args.activation, "pe_freqs": args.pe_freqs}
    train = {"steps": args.steps, "max_seconds": args.max_seconds, "batch_size": args.batch_size, "lr": args.lr}
    for section, values in (("model", model), ("train", train)):
        given = {key: value for key, value in values.items() if value is not None}
        if given:
            overrides[section] = given
    if args.grid_resolution is not None:
        overrides["eval"] = {"grid_resolution": args.grid_resolution}
    if args.device:
        overrides["device"] = args.device
    return overrides


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        config = load_occupancy_config(args.resume)
        more = {"steps": args.steps, "max_seconds": args.max_seconds}
        config["train"].update({key: value for key, value in more.items() if value is not None})
        run_dir, resume = args.resume, True
    else:
        file_values = read_yaml_mapping(args.config)
        config = resolve_config(overrides_from_args(args), base=resolve_config(file_values))
        run_dir = create_run_dir(args.output_root, "occupancy", mesh_name(config), config_label(config))
        resume = False
    print(f"run folder: {run_dir}")
    metrics = train_occupancy(config, run_dir, resume=resume)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=2))
    print(f"mesh: {Path(run_dir) / 'mesh.ply'}")
    return 0


def config_label(config: dict) -> str:
    return LayerSpec.parse(config["spec"]).label


if __name__ == "__main__":
    run_cli(main)
