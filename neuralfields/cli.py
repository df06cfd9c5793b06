"""The scripts' shared command-line vocabulary: one set of run flags for every training script,
turned into config overrides, and one-line errors.

Every training script takes --preset, --kind/--rank/--omega (or --spec), --steps, --time-budget,
--lr, --seed, --device, --threads, --output-root, --resume and --set KEY=VALUE (any config key);
task flags (--scene, --mesh, ...) come on top. Budget rule: a run ends at --steps or after
--time-budget seconds of training, whichever comes first; naming only one of the two on the
command line lifts the other limit (the preset's value), so the run lasts what you asked for.

Why argparse and not tyro (which derives a CLI from the config dataclasses): presets and resumed
runs need "only the flags the user gave" laid over a config read from a file, and the layer spec
needs --kind/--rank/--omega combined with the preset's spec; with tyro both would be rebuilt by hand
around defaults it fills in, so the scripts would not get thinner.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

import yaml

from neuralfields.config import RunConfig
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.spec import KINDS, LayerSpec

RESUME_KEYS = ("steps", "time_budget_s", "device", "threads")
"""What a resumed run may change: its budget and where it runs."""

DEPRECATED_FLAGS = {"--output": "--output-root", "--max-seconds": "--time-budget", "--config": "--preset"}
"""Old spellings, accepted for one release with a note."""


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


def renamed_flags(argv: list[str], renames: dict[str, str]) -> list[str]:
    """argv with deprecated flags (also `--flag=value`) replaced by their new names, with a note."""
    result = []
    for token in argv:
        flag, equals, value = token.partition("=")
        if flag in renames:
            print(f"note: {flag} is deprecated and will be removed; use {renames[flag]}", file=sys.stderr)
            token = renames[flag] + equals + value
        result.append(token)
    return result


def _number(what: str, kind: type = float, minimum: float = 0, strict: bool = True, note: str = ""):
    """An argparse type: a finite `kind` number above `minimum` (or at least it, strict=False)."""

    def convert(text: str):
        expected = f"{what} must be {'an integer' if kind is int else 'a finite number'} " \
                   f"{'>' if strict else '>='} {minimum:g}{note}, got"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected} {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{expected} {text}")
        return value

    return convert


def _assignment(text: str) -> tuple[str, object]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"value of {key} is not valid YAML: {value!r}") from None


def add_layer_args(parser: argparse.ArgumentParser) -> None:
    """--kind, --rank, --omega and --spec; unset parts keep the preset's spec."""
    group = parser.add_argument_group("layers (default: the preset's spec, e.g. sine:1@100)")
    group.add_argument("--kind", choices=tuple(KINDS), help="linear layer kind")
    group.add_argument("--rank", type=_number("rank", int, 1, strict=False), help="rank K of factorised layers")
    group.add_argument("--omega", type=_number("omega"), help="frequency omega of sine layers (default 100)")
    group.add_argument("--spec", help="the whole layer spec instead, e.g. dense, lowrank:4, sine:2@50")


def add_run_args(parser: argparse.ArgumentParser, preset_help: str) -> None:
    """The flags every training script shares."""
    group = parser.add_argument_group("run")
    group.add_argument("--preset", help=preset_help)
    group.add_argument("--steps", type=_number("steps", int, 1, strict=False),
                       help="training steps (alone: no time limit)")
    group.add_argument("--time-budget", type=_number("time budget", float, 0, strict=False, note=" seconds (0: none)"),
                       metavar="SECONDS",
                       help="seconds of training (alone: no step limit; 0: no time limit)")
    group.add_argument("--lr", type=_number("learning rate"), help="initial learning rate")
    group.add_argument("--seed", type=int, help="random seed")
    group.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--threads", type=_number("threads", int, 1, strict=False),
                       help="torch CPU threads (1 is fastest on a busy machine)")
    group.add_argument("--output-root", help="root folder of run folders (default outputs)")
    group.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its latest checkpoint (with --steps, "
                            "--time-budget, --device, --threads to change its budget or device)")
    group.add_argument("--set", type=_assignment, action="append", default=[], metavar="KEY=VALUE",
                       help="any config key, e.g. --set render_step_size=0.02 (repeatable)")
    add_layer_args(parser)


def layer_spec_from_args(args: argparse.Namespace, base: LayerSpec) -> LayerSpec:
    """The spec named by --spec or by --kind/--rank/--omega over `base`.
    A kind change drops the base's omega and initialisation; the rank stays where the kind takes one."""
    if args.spec is not None:
        if any(value is not None for value in (args.kind, args.rank, args.omega)):
            raise NeuralFieldsError("give either --spec or --kind/--rank/--omega, not both")
        try:
            return LayerSpec.parse(args.spec)
        except ValueError as exc:
            raise NeuralFieldsError(f"--spec: {exc}") from None
    kind = KINDS[args.kind or base.kind]
    if args.omega is not None and kind.param != "omega":
        raise NeuralFieldsError(f"--omega applies only to --kind sine, not --kind {kind.name}")
    if not kind.takes_rank:
        if args.rank is not None:
            raise NeuralFieldsError(f"--rank does not apply to --kind {kind.name}")
        return LayerSpec(kind.name)
    rank = args.rank if args.rank is not None else base.rank
    if rank is None:
        raise NeuralFieldsError(f"--kind {kind.name} needs --rank")
    same_kind = base.kind == kind.name
    omega = args.omega if args.omega is not None else (base.omega if same_kind else None)
    return LayerSpec(kind.name, rank, omega, base.init if same_kind else None)


def run_overrides(args: argparse.Namespace, base: RunConfig | None = None,
                  task_flags: dict[str, str] | None = None) -> dict:
    """Config overrides from the flags that were given: the shared run flags, `task_flags`
    (argparse dest -> config key) and --set, with the budget rule applied. `base` is the config
    they will be laid over (None for --resume, which keeps the run's layers)."""
    overrides = dict(args.set)
    flags = {"steps": "steps", "time_budget": "time_budget_s", "lr": "lr", "seed": "seed", "device": "device",
             "threads": "threads", "output_root": "output_root", **(task_flags or {})}
    overrides.update({key: getattr(args, dest) for dest, key in flags.items() if getattr(args, dest) is not None})
    if any(getattr(args, flag) is not None for flag in ("kind", "rank", "omega", "spec")):
        if base is None:
            raise NeuralFieldsError("--resume continues a run with its own layers; drop --kind/--rank/--omega/--spec")
        overrides["spec"] = layer_spec_from_args(args, base.spec)
    if overrides.get("time_budget_s") == 0:
        overrides["time_budget_s"] = None
    if "steps" in overrides and "time_budget_s" not in overrides:
        overrides["time_budget_s"] = None
    elif "time_budget_s" in overrides and "steps" not in overrides and overrides["time_budget_s"] is not None:
        overrides["steps"] = None
    if base is None:
        refused = sorted(set(overrides) - set(RESUME_KEYS))
        if refused:
            raise NeuralFieldsError(f"--resume continues a run as it was configured; it takes only --steps, "
                                    f"--time-budget, --device and --threads (got {refused[0]})")
    return overrides
