"""Typed run configs: one dataclass per task, presets as YAML overlays, one validation path.

Every task config derives from `RunConfig` (the fields every run has: layer spec, budgets,
schedule, seed, device, output root) and adds its own fields. A value reaches a config only
through `overlay`, which checks each key and value against the dataclass: an unknown key, a wrong
type or an out-of-range value is one line naming the source (a preset file, the command line,
a run's config.yaml) and the key. YAML presets state only what differs from the defaults.

The layer spec is held as a `LayerSpec`; it is written as a string only when the run's
config.yaml is saved (`to_mapping`), with its omega resolved so the file is explicit.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.oialr import DEFAULT_INTERVAL, DEFAULT_WARMUP_STEPS
from neuralfields.layers.spec import LayerSpec
from neuralfields.storage import CONFIG_FILE, load_config, read_yaml_mapping

ConfigT = TypeVar("ConfigT", bound="RunConfig")


def setting(default: Any, help: str, minimum: float | None = None, choices: tuple = (), length: int | None = None,
            above: bool = False) -> Any:
    """A config field: its default, a one-line help text and the values it accepts
    (`minimum`, or strictly greater with above=True; `choices`; a list's `length`)."""
    metadata = {"help": help, "minimum": minimum, "above": above, "choices": choices, "length": length}
    if isinstance(default, (list, dict, LayerSpec)):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    """What every training run is told. Budgets: a run ends at `steps` steps or after
    `time_budget_s` seconds of training, whichever comes first (either may be None, not both);
    the seconds are elapsed time, or with budget_clock cpu the CPU time the process used (all its
    threads), so that runs sharing a busy CPU still get equal compute;
    the learning rate decays exponentially from lr to lr * lr_final_ratio over that span.
    `oialr_*`: the schedule of adaptive-rank layers, applied when the trainer builds the model
    (`training.loop.build_task`); a resumed run keeps the schedule its checkpoint holds."""

    task: ClassVar[str] = ""
    default_omega: ClassVar[float | None] = None
    """Omega given to a sine spec that names none (None: the sine kind's default)."""

    spec: LayerSpec = setting(LayerSpec("sine", 1), "layer spec of the network's linear layers")
    steps: int | None = setting(20000, "training steps (null: no step limit)", minimum=1)
    time_budget_s: float | None = setting(None, "training time limit in seconds (null: none)", minimum=0, above=True)
    budget_clock: str = setting("wall", "what time_budget_s counts: wall (elapsed seconds) or cpu (CPU seconds of "
                                "the process: budgets that stay fair on a shared, busy CPU)", choices=("wall", "cpu"))
    lr: float = setting(5e-4, "initial learning rate", minimum=0, above=True)
    lr_final_ratio: float = setting(0.1, "final learning rate / initial learning rate", minimum=0, above=True)
    seed: int = setting(0, "random seed", minimum=0)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    threads: int | None = setting(None, "torch CPU threads (null: torch's default)", minimum=1)
    output_root: str = setting("outputs", "root folder of run folders")
    checkpoint_every: int = setting(2000, "steps between checkpoints", minimum=1)
    oialr_warmup_steps: int = setting(DEFAULT_WARMUP_STEPS, "adaptive-rank (oialr) layers: full-rank steps before "
                                      "the switch to U S V^T", minimum=0)
    oialr_interval: int = setting(DEFAULT_INTERVAL, "adaptive-rank (oialr) layers: steps between rank updates",
                                  minimum=1)

    def __post_init__(self) -> None:
        if self.steps is None and self.time_budget_s is None:
            raise NeuralFieldsError("a run needs a step limit or a time budget (steps and time_budget_s are both null)")

    @property
    def run_name(self) -> tuple[str, ...]:
        """Folder names of this run under output_root (a timestamp folder goes below them)."""
        raise NotImplementedError

    @staticmethod
    def upgrade(values: dict) -> dict:
        """A saved config.yaml of an older layout in today's keys (the default: unchanged)."""
        return values

    def describe_budget(self) -> str:
        """The budget rule in words, for logs: e.g. `300 s` or `2000 steps or 300 s, whichever first`."""
        parts = [f"{self.steps} steps"] if self.steps is not None else []
        parts += [f"{self.time_budget_s:g} s"] if self.time_budget_s is not None else []
        return " or ".join(parts) + (", whichever comes first" if len(parts) == 2 else "")


def config_fields(config_type: type[RunConfig]) -> dict[str, dataclasses.Field]:
    return {item.name: item for item in dataclasses.fields(config_type)}


def overlay(config: ConfigT, values: dict, source: str) -> ConfigT:
    """`config` with `values` applied, each checked against the dataclass (one-line errors)."""
    fields = config_fields(type(config))
    hints = typing.get_type_hints(type(config))
    unknown = sorted(set(values) - set(fields) - {"task"})
    if unknown:
        raise NeuralFieldsError(f"{source}: unknown config key {unknown[0]!r}")
    if values.get("task", type(config).task) != type(config).task:
        raise NeuralFieldsError(f"{source}: a {values['task']!r} config, not a {type(config).task!r} one")
    checked = {key: _checked(key, value, hints[key], fields[key].metadata, source)
               for key, value in values.items() if key != "task"}
    if "spec" in checked:
        checked["spec"] = checked["spec"].resolved(type(config).default_omega)
    try:
        return dataclasses.replace(config, **checked)
    except ValueError as exc:  # cross-field checks in __post_init__ (e.g. a rank above the width)
        raise NeuralFieldsError(str(exc)) from None


def defaults(config_type: type[ConfigT]) -> ConfigT:
    config = config_type()
    return dataclasses.replace(config, spec=config.spec.resolved(config_type.default_omega))


def load_preset(config_type: type[ConfigT], preset_dir: Path, name_or_path: str) -> ConfigT:
    """The task's defaults overlaid by a preset: a name of a YAML file in `preset_dir` or a YAML
    path. A preset may say `extends: <preset>` to start from another one."""
    path = Path(name_or_path)
    if not path.suffix:
        path = preset_dir / f"{name_or_path}.yaml"
    values = read_yaml_mapping(path)
    extends = values.pop("extends", None)
    base = load_preset(config_type, preset_dir, str(extends)) if extends else defaults(config_type)
    return overlay(base, values, str(path))


def saved_task(values: dict) -> str:
    """The task of a saved config.yaml; configs written before the task contract have no `task`
    key, and only NeRF runs wrote such configs (occupancy runs always said `task: occupancy`)."""
    return str(values.get("task", "nerf"))


def load_run_config(config_type: type[ConfigT], run_dir: str | Path, overrides: dict | None = None) -> ConfigT:
    """A run folder's saved config as `config_type` (older layouts upgraded, keys added since then
    at their defaults), with `overrides` (e.g. a resume's new budget) laid over it."""
    values = load_config(run_dir)
    task = saved_task(values)
    if task != config_type.task:
        raise NeuralFieldsError(f"{run_dir} is a run of task {task!r}, not {config_type.task!r}")
    config = overlay(defaults(config_type), config_type.upgrade(values), str(Path(run_dir) / CONFIG_FILE))
    return overlay(config, overrides or {}, "overrides") if overrides else config


def to_mapping(config: RunConfig) -> dict:
    """Plain YAML/JSON-ready values, with the task first and the layer spec as its string."""
    values = {"task": type(config).task}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        values[item.name] = str(value) if isinstance(value, LayerSpec) else value
    return values


def _checked(key: str, value: Any, hint: Any, metadata: dict, source: str) -> Any:
    """`value` as the field's type, or a NeuralFieldsError naming source, key and what is accepted.
    Numeric strings become numbers: YAML reads `lr: 5e-4` (no dot) as a string."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    where = f"{source}: {key}"
    if hint is LayerSpec:
        try:
            return LayerSpec.parse(value)
        except (ValueError, AttributeError) as exc:
            raise NeuralFieldsError(f"{where}: {exc}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise NeuralFieldsError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, (str, Path)):
            raise NeuralFieldsError(f"{where} must be a string, got {value!r}")
        value = str(value)
        if metadata.get("choices") and value not in metadata["choices"]:
            raise NeuralFieldsError(f"{where} must be one of {', '.join(metadata['choices'])}, got {value!r}")
        return value
    if hint in (int, float):
        return _in_range(_number(value, hint, where), metadata, where)
    if typing.get_origin(hint) is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise NeuralFieldsError(f"{where} must be a list, got {value!r}")
        if metadata.get("length") is not None and len(value) != metadata["length"]:
            raise NeuralFieldsError(f"{where} must hold {metadata['length']} numbers, got {len(value)}")
        return [_in_range(_number(item, item_type, where), metadata, where) for item in value]
    raise TypeError(f"config field {key} has a type the config reader does not know: {hint}")


def _number(value: Any, kind: type, where: str) -> int | float:
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise NeuralFieldsError(f"{where} must be a {'whole ' if kind is int else ''}number, got {value!r}")
    if kind is int:
        if number != int(number):
            raise NeuralFieldsError(f"{where} must be a whole number, got {value!r}")
        return int(number)
    return float(number)


def _in_range(number: int | float, metadata: dict, where: str) -> int | float:
    minimum = metadata.get("minimum")
    if minimum is None:
        return number
    if metadata.get("above") and not number > minimum:
        raise NeuralFieldsError(f"{where} must be > {minimum:g}, got {number:g}")
    if not number >= minimum:
        raise NeuralFieldsError(f"{where} must be >= {minimum:g}, got {number:g}")
    return number
