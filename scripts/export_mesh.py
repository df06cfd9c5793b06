"""Extract a mesh from a trained run (occupancy or NeRF) with marching cubes and export it.

    python scripts/export_mesh.py outputs/occupancy/armadillo/sine-k1/<timestamp> --format glb
    python scripts/export_mesh.py outputs/lego/sine-k1/<timestamp> --resolution 256

The run's task is read from its config.yaml. Occupancy runs: the level set logit = 0, exported
in the original mesh's coordinates. NeRF runs: the density level set sigma = --level (default 10)
inside the run's scene box, vertex colours from the radiance field (averaged over six view
directions). Writes RUN_DIR/mesh_<N>.<format> unless --output. A run that is still training can
be exported (its latest checkpoint is used).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuralfields.cli import run_cli
from neuralfields.errors import NeuralFieldsError
from neuralfields.meshing.marching import NERF_DENSITY_LEVEL, OCCUPANCY_LOGIT_LEVEL, extract_mesh
from neuralfields.meshing.mesh_io import EXPORT_FORMATS, PADDED_BOUNDS, export_mesh
from neuralfields.runs import Run, open_run
from neuralfields.training.occupancy import load_normalization


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run folder (holds config.yaml and checkpoints/)")
    parser.add_argument("--resolution", type=int, default=256, help="marching-cubes grid size per axis")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="ply")
    parser.add_argument("--level", type=float, help="iso level (default: logit 0 / NeRF density 10)")
    parser.add_argument("--output", type=Path, help="output file (default RUN_DIR/mesh_<N>.<format>)")
    return parser.parse_args()


def occupancy_mesh(run: Run, resolution: int, level: float | None):
    field = run.load_model("cpu")
    level = OCCUPANCY_LOGIT_LEVEL if level is None else level
    mesh = extract_at_level(field, PADDED_BOUNDS, resolution, level)
    return load_normalization(run.path).mesh_to_original(mesh)


def nerf_mesh(run: Run, resolution: int, level: float | None):
    field = run.load_model("cpu").field
    bounds = np.asarray(run.config.aabb, dtype=np.float64).reshape(2, 3)
    level = NERF_DENSITY_LEVEL if level is None else level
    return extract_at_level(field.query_density, bounds, resolution, level, color_fn=field.query_color)


def extract_at_level(field_fn, bounds, resolution: int, level: float, color_fn=None):
    """extract_mesh, with a hint to pick another --level when the field has no surface there."""
    try:
        return extract_mesh(field_fn, bounds, resolution, level, color_fn=color_fn)
    except NeuralFieldsError as exc:
        raise NeuralFieldsError(f"{exc}; pass --level inside that range") from None


MESHERS = {"nerf": nerf_mesh, "occupancy": occupancy_mesh}


def main() -> int:
    args = parse_args()
    if args.resolution < 8:
        raise NeuralFieldsError(f"--resolution must be at least 8, got {args.resolution}")
    run = open_run(args.run_dir)
    mesh = MESHERS[run.task](run, args.resolution, args.level)
    output = args.output or args.run_dir / f"mesh_{args.resolution}.{args.format}"
    export_mesh(mesh, output, args.format)
    print(f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces -> {output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
