"""Helpers shared by the scripts: one-line errors and the layer-spec arguments."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.spec import KINDS, LayerSpec


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's main: user errors become `error: ...` and exit 2, Ctrl-C exits 130."""
    try:
        code = main()
    except NeuralFieldsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def _rank(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rank must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"rank must be an integer >= 1, got {value}")
    return value


def _omega(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"omega must be a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"omega must be a finite number > 0, got {text}")
    return value


def add_layer_args(
    parser: argparse.ArgumentParser,
    default_kind: str = "sine",
    default_rank: int = 1,
    default_omega: float | None = None,
) -> None:
    """--kind, --rank, --omega, validated by argparse (bad values exit 2 with one line)."""
    group = parser.add_argument_group("layers")
    group.add_argument("--kind", choices=KINDS, default=default_kind, help=f"linear layer kind (default {default_kind})")
    group.add_argument("--rank", type=_rank, default=default_rank, help=f"rank K of factorised layers (default {default_rank})")
    group.add_argument("--omega", type=_omega, default=default_omega, help="frequency omega of sine layers (default: per task)")


def layer_spec_from_args(args: argparse.Namespace, default_omega: float) -> LayerSpec:
    """The LayerSpec named by --kind/--rank/--omega; a sine spec without --omega gets default_omega."""
    if args.kind == "dense":
        return LayerSpec("dense")
    if args.omega is not None and args.kind != "sine":
        raise NeuralFieldsError(f"--omega applies only to --kind sine, not --kind {args.kind}")
    return LayerSpec(args.kind, args.rank, args.omega).with_default_omega(default_omega)
