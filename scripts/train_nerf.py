"""Train a NeRF whose linear layers are sine low-rank (default), low-rank or dense.

    python scripts/train_nerf.py --scene lego --rank 1          # the headline: sine rank 1
    python scripts/train_nerf.py --scene demo                   # embedded demo scene, ~4 min on CPU
    python scripts/train_nerf.py --scene lego --kind dense --preset gpu
    python scripts/train_nerf.py --scene fern --data-dir data/nerf_llff_data   # LLFF, NDC rays
    python scripts/train_nerf.py --scene path/to/my_capture     # your photos: LLFF, nerfstudio or COLMAP
    python scripts/train_nerf.py --resume outputs/lego/sine-k1/20260101-120000 --time-budget 600
    python scripts/train_nerf.py --scene lego --rank 1 --viewer  # watch it train in the browser (prints the URL)

Presets live in configs/nerf/ (cpu, gpu, demo, llff, circling); `auto` picks demo for --scene demo;
for a photo capture (poses_bounds.npy, nerfstudio's transforms.json or a COLMAP sparse model) llff
when its view directions stay within 30 degrees of their mean (forward-facing: NDC rays) and
circling otherwise (--scene-kind overrides the measurement); else gpu on CUDA and cpu otherwise.
Budget: --steps or --time-budget, whichever ends first; naming only one lifts the other.
Each run writes <output-root>/<scene>/<kind>-k<rank>/<timestamp>/ (see docs/architecture.md).
"""

import argparse
import sys

from neuralfields.cli import DEPRECATED_FLAGS, add_run_args, renamed_flags, run_cli, run_overrides
from neuralfields.config import overlay
from neuralfields.training.nerf import auto_preset, load_preset, train_nerf
from neuralfields.viewer.cli import add_viewer_args, live_viewer

NERF_FLAGS = {"scene": "scene", "data_dir": "data_dir", "downscale": "downscale", "sampler": "sampler",
              "scene_kind": "scene_kind"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", help="'demo', a scene name under --data-dir, or a scene folder (default lego)")
    parser.add_argument("--data-dir", help="folder holding the scene folders, or the scene folder itself "
                                           "(default data/nerf_synthetic)")
    parser.add_argument("--downscale", type=int, help="image downscale factor")
    parser.add_argument("--sampler", choices=("grid", "naive"), help="occupancy grid or naive uniform samples")
    parser.add_argument("--scene-kind", choices=("auto", "forward", "circling"),
                        help="photo captures: forward-facing (NDC rays) or circling (spherified); "
                             "default auto, measured from the cameras")
    add_run_args(parser, "cpu, gpu, demo, llff, circling, auto (default), or a YAML config path")
    add_viewer_args(parser)
    return parser.parse_args(renamed_flags(sys.argv[1:], DEPRECATED_FLAGS))


def main() -> None:
    args = parse_args()
    if args.resume:
        with live_viewer(args) as callbacks:
            train_nerf(run_overrides(args), resume=args.resume, callbacks=callbacks)
        return
    preset = args.preset or "auto"
    if preset == "auto":
        preset = auto_preset(args.scene or "lego", args.data_dir, args.device or "auto", args.scene_kind or "auto")
    base = load_preset(preset)
    config = overlay(base, run_overrides(args, base, NERF_FLAGS), "command line")
    with live_viewer(args) as callbacks:
        train_nerf(config, callbacks=callbacks)


if __name__ == "__main__":
    run_cli(main)
