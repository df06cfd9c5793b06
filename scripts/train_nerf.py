"""Train a NeRF whose linear layers are sine low-rank (default), low-rank or dense.

    python scripts/train_nerf.py --scene lego --rank 1          # the headline: sine rank 1
    python scripts/train_nerf.py --scene demo                   # embedded demo scene, ~3 min on CPU
    python scripts/train_nerf.py --scene lego --kind dense --preset gpu
    python scripts/train_nerf.py --scene fern --data-dir data/nerf_llff_data   # LLFF, NDC rays
    python scripts/train_nerf.py --resume outputs/lego/sine-k1/20260101-120000

Presets live in configs/nerf/ (cpu, gpu, demo, llff); `auto` picks demo for --scene demo, llff
for a forward-facing LLFF folder (poses_bounds.npy), else gpu on CUDA and cpu otherwise.
Each run writes outputs/<scene>/<kind>-k<rank>/<timestamp>/.
"""

import argparse

from neuralfields.cli import add_layer_args, layer_spec_from_args, run_cli
from neuralfields.training.nerf import NERF_DEFAULT_OMEGA, auto_preset, load_preset, merge_config, train_nerf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="lego", help="'demo', a scene name under --data-dir, or a folder")
    parser.add_argument("--data-dir", help="folder holding the scene folders (default: data/nerf_synthetic)")
    parser.add_argument("--preset", default="auto", help="cpu, gpu, demo, llff, auto, or a YAML config path")
    add_layer_args(parser, default_kind="sine", default_rank=1)
    parser.add_argument("--steps", type=int, help="training steps (overrides the preset)")
    parser.add_argument("--time-budget", type=float, help="training time limit in seconds (0: none)")
    parser.add_argument("--downscale", type=int, help="image downscale factor (overrides the preset)")
    parser.add_argument("--sampler", choices=("grid", "naive"), help="occupancy grid or naive uniform samples")
    parser.add_argument("--lr", type=float, help="initial learning rate")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy shared machine)")
    parser.add_argument("--output", default="outputs", help="root folder for run folders (default outputs)")
    parser.add_argument("--resume", help="continue the run in this folder from its latest checkpoint")
    args = parser.parse_args()

    time_budget = {} if args.time_budget is None else {"time_budget_s": args.time_budget or None}
    if args.resume:
        overrides = {"steps": args.steps, "device": args.device, **time_budget}
        train_nerf({key: value for key, value in overrides.items() if value is not None}, resume=args.resume)
        return
    preset = args.preset
    if preset == "auto":
        preset = auto_preset(args.scene, args.data_dir, args.device)
    overrides = {
        "scene": args.scene, "device": args.device, "output_root": args.output,
        "spec": str(layer_spec_from_args(args, default_omega=NERF_DEFAULT_OMEGA)),
        "steps": args.steps, "downscale": args.downscale, "sampler": args.sampler, "lr": args.lr, "seed": args.seed,
        "cpu_threads": args.threads,
    }
    config = merge_config(load_preset(preset), {key: value for key, value in overrides.items() if value is not None})
    train_nerf({**config, "data_dir": args.data_dir, **time_budget})


if __name__ == "__main__":
    run_cli(main)
