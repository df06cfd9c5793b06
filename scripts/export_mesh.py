"""Extract a mesh from a trained run (occupancy or NeRF) with marching cubes and export it.

    python scripts/export_mesh.py outputs/occupancy/armadillo/sine-k1/<timestamp> --format glb
    python scripts/export_mesh.py outputs/nerf/lego/sine-k1/<timestamp> --resolution 256

The run kind is read from the run's config.yaml. Occupancy runs: the level set logit = 0,
exported in the original mesh's coordinates. NeRF runs: the density level set
sigma = --level (default 10) inside the run's scene box, vertex colours from the radiance
field (averaged over six view directions). Writes RUN_DIR/mesh_<N>.<format> unless --output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralfields.cli import run_cli  # noqa: E402
from neuralfields.errors import NeuralFieldsError  # noqa: E402
from neuralfields.meshing.marching import NERF_DENSITY_LEVEL, OCCUPANCY_LOGIT_LEVEL, extract_mesh  # noqa: E402
from neuralfields.meshing.mesh_io import EXPORT_FORMATS, PADDED_BOUNDS, export_mesh  # noqa: E402
from neuralfields.training.occupancy import TASK as OCCUPANCY_TASK, load_occupancy_run  # noqa: E402
from neuralfields.training.runs import load_config  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run folder (holds config.yaml and checkpoints/)")
    parser.add_argument("--resolution", type=int, default=256, help="marching-cubes grid size per axis")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="ply")
    parser.add_argument("--level", type=float, help="iso level (default: logit 0 / NeRF density 10)")
    parser.add_argument("--output", type=Path, help="output file (default RUN_DIR/mesh_<N>.<format>)")
    return parser.parse_args()


def occupancy_mesh(run_dir: Path, resolution: int, level: float | None):
    field, _, normalization = load_occupancy_run(run_dir)
    level = OCCUPANCY_LOGIT_LEVEL if level is None else level
    return normalization.mesh_to_original(extract_at_level(field, PADDED_BOUNDS, resolution, level))


def nerf_mesh(run_dir: Path, config: dict, resolution: int, level: float | None):
    from neuralfields.training.nerf import load_field

    field, config = load_field(run_dir)
    bounds = np.asarray(config["aabb"], dtype=np.float64).reshape(2, 3)
    level = NERF_DENSITY_LEVEL if level is None else level
    return extract_at_level(field.query_density, bounds, resolution, level, color_fn=field.query_color)


def extract_at_level(field_fn, bounds, resolution: int, level: float, color_fn=None):
    """extract_mesh, with a hint to pick another --level when the field has no surface there."""
    try:
        return extract_mesh(field_fn, bounds, resolution, level, color_fn=color_fn)
    except NeuralFieldsError as exc:
        raise NeuralFieldsError(f"{exc}; pass --level inside that range") from None


def main() -> int:
    args = parse_args()
    if args.resolution < 8:
        raise NeuralFieldsError(f"--resolution must be at least 8, got {args.resolution}")
    config = load_config(args.run_dir)
    if config.get("task") == OCCUPANCY_TASK:
        mesh = occupancy_mesh(args.run_dir, args.resolution, args.level)
    elif "aabb" in config and "scene" in config:
        mesh = nerf_mesh(args.run_dir, config, args.resolution, args.level)
    else:
        raise NeuralFieldsError(f"{args.run_dir / 'config.yaml'} is neither an occupancy nor a NeRF run config")
    output = args.output or args.run_dir / f"mesh_{args.resolution}.{args.format}"
    export_mesh(mesh, output, args.format)
    print(f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces -> {output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
