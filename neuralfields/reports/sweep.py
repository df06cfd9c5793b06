"""Rate-distortion sweeps: plan the configurations, choose a learning rate per line, and train each
configuration as an ordinary run folder through the task's own trainer (`run_dir=`), going on when
one fails.

A sweep folder:
    sweep.json              settings, lines, every configuration (name, line, rank, width, seed,
                            parameters, config) and the commands that ran it
    probe/<line>-w<W>-lr<LR>/   learning-rate probe runs; probe/lr.json: their scores, the lr chosen
                            per line and width
    runs/<name>/            one run folder per configuration, plus what the sweep adds: rd.json (the
                            quantised re-evaluation and the machine) or failed.txt (the error line)
    report.md, results.csv, results.json, plots/     written by neuralfields.reports.report

Lines: one per `--kinds` entry and initialisation (`lowrank` and `lowrank-matched` for the low-rank
kind's two inits), `dense` at each width (the ceiling), and `dense-equal`: for every (rank, width)
the widest dense network of the same architecture whose parameter count does not exceed that of
the sine network (sine and low-rank store the same number of parameters). An entry may carry the
kind's `@` parameter (`oialr@0.5`: its own line, `oialr@0.5`). Adaptive kinds (OIALR) find their
own rank: they run once per width and seed from minimum rank 1 (`oialr:1@0.5`), not at every
`--ranks` value, and the report places them at the size they store at the end of training.

A sweep grows: a command that differs from the folder's only in kinds, ranks, widths or seeds
adds its configurations to sweep.json (settings: every value any of its commands named), so that
e.g. `--ranks 1 --seeds 1,2` repeats rank 1 in a sweep that ran every rank once.

Learning rates are probed per line and width (a probe group): the rate that suits a width-64 network
may collapse the same line at width 256, and a baseline that failed to train is no baseline.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from neuralfields import storage
from neuralfields.config import RunConfig, overlay, to_mapping
from neuralfields.data.scenes import resolve_scene_dir
from neuralfields.device import resolve_device
from neuralfields.errors import NeuralFieldsError
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.spec import KINDS, LayerSpec
from neuralfields.meshing.shapes import DEFAULT_SHAPE_NAME
from neuralfields.progress import progress_bar
from neuralfields.reports.evaluate import PROBE_METRIC, QUALITY, format_quality, probe_score, quantized_results
from neuralfields.reports.machine import machine_info
from neuralfields.runs import TASKS, open_run
from neuralfields.training import nerf, occupancy

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
PROBE_DIR = "probe"
LR_FILE = "lr.json"
FAILED_FILE = "failed.txt"
RD_FILE = "rd.json"
EQUAL_LINE = "dense-equal"
METHOD_LINE = "sine"
"""The line dense-equal is sized against (else the first fixed-rank line), and that the report's
summary compares every other line with: the method this toolkit is about."""
GRID_SETTINGS = ("kinds", "ranks", "widths", "seeds")
"""The settings a continued sweep may change (it grows by the command's configurations); every other
measured setting (target, budget, preset, probe) must match, so that all of its runs compare."""
PROBE_LR_FACTORS = (1 / 3, 1.0, 3.0)
PROBE_BUDGET_FRACTION = 0.2
NERF_PROBE_OVERRIDES = {"video_frames": 0, "test_views": 5}
"""Probe runs skip the orbit video and score 5 views (their own test score is not used)."""


@dataclass(frozen=True)
class Trainer:
    """A task's preset loader and its library training entry point."""

    load_preset: Callable[[str], RunConfig]
    train: Callable[..., tuple[Path, dict]]


TRAINERS = {"nerf": Trainer(nerf.load_preset, nerf.train_nerf),
            "occupancy": Trainer(occupancy.load_preset, occupancy.train_occupancy)}


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep measures (compared when a sweep folder is continued or joined by a shard)
    and where it runs (`device`, `threads`: not compared)."""

    task: str
    target: str | None = None
    """NeRF: the scene (name or folder); occupancy: the mesh file (None: the built-in shape)."""
    kinds: tuple[str, ...] = ("dense", "lowrank", "sine")
    ranks: tuple[int, ...] = (1, 4)
    widths: tuple[int, ...] = ()
    """Empty: the preset's width."""
    seeds: tuple[int, ...] = (0,)
    budget_s: float | None = None
    steps: int | None = None
    """Both None: the preset's budget."""
    preset: str | None = None
    data_dir: str | None = None
    probe_s: float | None = None
    probe_steps: int | None = None
    """Both None: a fifth of the main budget; either 0: no probe (every line at the preset's lr)."""
    probe_lrs: tuple[float, ...] = ()
    """Empty: the preset's lr times 1/3, 1 and 3."""
    device: str | None = None
    threads: int | None = None
    """None: the preset's."""

    def measured(self) -> dict:
        values = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()
                if key not in ("device", "threads")}


@dataclass(frozen=True)
class Configuration:
    """One run of the sweep. `width` is the network's; `sweep_width` the width of the sweep it
    belongs to (they differ for dense-equal, whose rank is that of the network it matches).
    `parameters`: the count when the model is built; for adaptive lines (rank None) that is the
    full-rank start, and the report uses what the trained run stores instead."""

    name: str
    line: str
    rank: int | None
    width: int
    sweep_width: int
    seed: int
    parameters: int
    config: RunConfig

    @property
    def probe_group(self) -> str:
        return probe_group(self.line, self.sweep_width)

    def record(self) -> dict:
        return {"name": self.name, "line": self.line, "rank": self.rank, "width": self.width,
                "sweep_width": self.sweep_width, "seed": self.seed, "parameters": self.parameters,
                "spec": str(self.config.spec), "config": to_mapping(self.config)}


@dataclass(frozen=True)
class SweepPlan:
    settings: SweepSettings
    base: RunConfig
    target_name: str
    lines: dict[str, dict]
    """line -> {"kind", "init", "title"}, in plotting order."""
    configurations: tuple[Configuration, ...]
    reference_parameters: int
    """Parameters of the preset's network built dense: the '% of dense' of every row."""
    probe: dict | None = field(default=None)
    """{"time_budget_s", "steps", "lrs"}, or None when no probe runs."""

    @property
    def task(self) -> str:
        return self.settings.task

    def record(self) -> dict:
        return {"task": self.task, "target": self.target_name, "settings": self.settings.measured(),
                "quality_metric": QUALITY[self.task], "reference_dense_parameters": self.reference_parameters,
                "lines": self.lines, "probe": self.probe,
                "configurations": [configuration.record() for configuration in self.configurations]}


def parameter_count(task: str, config: RunConfig) -> int:
    """Parameters of the task's model built from `config` (what metrics.json will report)."""
    return parameter_report(TASKS[task].build_model(config, "cpu"))["parameters"]


def width_values(base: RunConfig, width: int) -> dict:
    """The config values a network width sets: `width`, and for NeRF the colour branch scaled by the
    preset's ratio (color_width / width: 1/2 in every shipped preset)."""
    if type(base).task == "nerf":
        return {"width": width, "color_width": max(1, round(width * base.color_width / base.width))}
    return {"width": width}


def equal_size_width(task: str, base: RunConfig, budget: int, widest: int) -> int:
    """The widest dense network of base's architecture (widths 1..widest) with at most `budget`
    parameters; parameter counts grow with the width, so a bisection finds it."""

    def count(width: int) -> int:
        return parameter_count(task, overlay(base, {**width_values(base, width), "spec": "dense"}, "equal size"))

    if count(1) > budget:
        raise NeuralFieldsError(f"no dense network of this architecture has at most {budget:,} parameters")
    low, high = 1, widest
    if count(high) <= budget:
        return high
    while high - low > 1:  # count(low) <= budget < count(high)
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) <= budget else (low, middle)
    return low


def kind_entry(text: str) -> tuple[str, str, float | None]:
    """(line name, kind, `@` parameter or None) of one `--kinds` entry: `sine`, or `oialr@0.5` with
    the kind's `@` parameter (line `oialr@0.5`); one line naming the entry when it is not valid."""
    name, at, value_text = text.partition("@")
    if name not in KINDS:
        raise NeuralFieldsError(f"unknown layer kind {name!r} in --kinds; choose from {', '.join(KINDS)}")
    if not at:
        return name, name, None
    try:
        value = float(value_text)
    except ValueError:
        value = math.nan  # refused as not a finite number; the message quotes the entry
    problem = KINDS[name].param_problem(value)
    if problem:
        raise NeuralFieldsError(f"--kinds entry {text!r}: {problem}")
    return f"{name}@{value:g}", name, value


def line_table(kinds: tuple[str, ...]) -> dict[str, dict]:
    """The lines a list of `--kinds` entries gives: each entry once per initialisation, then
    dense-equal when any kind has a fixed rank. An adaptive line always names its `@` parameter
    (the kind's default when the entry gives none)."""
    lines = {}
    for entry in kinds:
        base, name, param = kind_entry(entry)
        kind = KINDS[name]
        if param is None and kind.adaptive:
            param = kind.default_param
        for position, init in enumerate(kind.inits or (None,)):
            line = base if position == 0 else f"{base}-{init}"
            lines[line] = {"kind": name, "init": init, "param": param, "title": line_title(name, init, param)}
    if any(KINDS[about["kind"]].fixed_rank for about in lines.values()):
        lines[EQUAL_LINE] = {"kind": "dense", "init": None, "param": None, "title": "dense (equal size)"}
    return lines


LINE_TITLES = {"dense": "dense (full width)", "lowrank": "low-rank", "sine": "sine low-rank", "oialr": "OIALR",
               "oialrsine": "sine OIALR"}


def line_title(kind: str, init: str | None, param: float | None = None) -> str:
    """E.g. `low-rank (matched init)`, `OIALR (beta 0.5)`."""
    details = ([f"{init} init"] if init else []) + ([f"{KINDS[kind].param} {param:g}"] if param is not None else [])
    return LINE_TITLES.get(kind, kind) + (f" ({', '.join(details)})" if details else "")


def _check_numbers(flag: str, values, kind: type, minimum: float, strict: bool = False) -> None:
    for value in values:
        bad = not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or (kind is int and value != int(value)) or value < minimum or (strict and value == minimum)
        if bad:
            raise NeuralFieldsError(f"{flag} takes {'whole ' if kind is int else ''}numbers "
                                    f"{'>' if strict else '>='} {minimum:g}, got {value!r}")


def _check_settings(settings: SweepSettings) -> None:
    if settings.task not in TRAINERS:
        raise NeuralFieldsError(f"unknown task {settings.task!r}; expected {' or '.join(TRAINERS)}")
    if not settings.kinds:
        raise NeuralFieldsError("--kinds names no layer kind")
    entries = [kind_entry(entry) for entry in settings.kinds]
    if len({line for line, _, _ in entries}) < len(entries):
        raise NeuralFieldsError(f"--kinds names a line twice: {','.join(settings.kinds)}")
    for flag, values in (("--ranks", settings.ranks), ("--widths", settings.widths), ("--seeds", settings.seeds)):
        _check_numbers(flag, values, int, 0 if flag == "--seeds" else 1)
        if len(set(values)) < len(values):
            raise NeuralFieldsError(f"{flag} names a value twice")
    if not settings.ranks and any(KINDS[kind].fixed_rank for _, kind, _ in entries):
        raise NeuralFieldsError("--ranks names no rank")
    if not settings.seeds:
        raise NeuralFieldsError("--seeds names no seed")
    if settings.budget_s is not None:
        _check_numbers("--budget-s", [settings.budget_s], float, 0, strict=True)
    if settings.steps is not None:
        _check_numbers("--steps", [settings.steps], int, 1)
    for flag, value in (("--lr-probe-s", settings.probe_s), ("--lr-probe-steps", settings.probe_steps)):
        if value is not None:
            _check_numbers(flag, [value], int if flag.endswith("steps") else float, 0)
    _check_numbers("--probe-lrs", settings.probe_lrs, float, 0, strict=True)


def _base_config(settings: SweepSettings) -> tuple[RunConfig, str]:
    """(the preset with the sweep's target, budget and device laid over it; the preset's name)."""
    trainer = TRAINERS[settings.task]
    if settings.task == "nerf":
        scene = settings.target or "lego"
        resolve_scene_dir(scene, settings.data_dir)  # a missing scene is one line, before anything is made
        preset = settings.preset or nerf.auto_preset(scene, settings.data_dir, settings.device or "auto")
        values = {"scene": scene, "data_dir": settings.data_dir}
    else:
        if settings.target is not None and not Path(settings.target).is_file():
            raise NeuralFieldsError(f"mesh file not found: {settings.target}")
        preset = settings.preset or "default"
        values = {"mesh": settings.target}
    given = {"device": settings.device, "threads": settings.threads}
    values.update({key: value for key, value in given.items() if value is not None})
    values.update(budget_values(settings.budget_s, settings.steps))
    base = overlay(trainer.load_preset(preset), values, "sweep settings")
    resolve_device(base.device)
    return base, preset


def budget_values(seconds: float | None, steps: int | None) -> dict:
    """Config values of a budget: the limits named, the other lifted; none named: the preset's."""
    if seconds is None and steps is None:
        return {}
    return {"time_budget_s": seconds, "steps": steps}


def plan_sweep(settings: SweepSettings) -> SweepPlan:
    """Every configuration of the sweep, checked (kinds, ranks against widths, budgets, the scene or
    mesh, the device) before anything is written; raises NeuralFieldsError naming the bad value."""
    _check_settings(settings)
    base, preset = _base_config(settings)
    task = settings.task
    widths = settings.widths or (base.width,)
    settings = dataclasses.replace(settings, widths=tuple(widths), preset=preset)
    lines = line_table(settings.kinds)

    def configure(line: str, width: int, rank: int | None, seed: int, spec: LayerSpec,
                  sweep_width: int) -> Configuration:
        name = f"{line}-w{sweep_width}" + (f"-k{rank}" if rank is not None else "") + f"-s{seed}"
        try:
            config = overlay(base, {**width_values(base, width), "spec": spec, "seed": seed}, name)
        except NeuralFieldsError as exc:
            raise NeuralFieldsError(f"configuration {name}: {exc}") from None
        return Configuration(name, line, rank, width, sweep_width, seed, parameter_count(task, config), config)

    fixed_rank = [line for line, about in lines.items() if KINDS[about["kind"]].fixed_rank]
    sized_by = METHOD_LINE if METHOD_LINE in lines else next(iter(fixed_rank), None)
    configurations = []
    for line, about in lines.items():
        kind = KINDS[about["kind"]]
        for width in widths:
            if line == EQUAL_LINE:  # the last line: the networks it is sized by are planned already
                for rank in settings.ranks:
                    budget = next(c.parameters for c in configurations
                                  if c.line == sized_by and (c.sweep_width, c.rank) == (width, rank))
                    matched = equal_size_width(task, base, budget, width)
                    configurations += [configure(line, matched, rank, seed, LayerSpec("dense"), width)
                                       for seed in settings.seeds]
            elif kind.adaptive:  # it finds its own rank: once per width and seed, from minimum rank 1
                spec = LayerSpec(kind.name, 1, about["param"])
                configurations += [configure(line, width, None, seed, spec, width) for seed in settings.seeds]
            elif kind.takes_rank:
                omega = about["param"] if about["param"] is not None else (
                    base.spec.omega if base.spec.kind == kind.name else None)
                configurations += [configure(line, width, rank, seed, LayerSpec(kind.name, rank, omega, about["init"]),
                                             width) for rank in settings.ranks for seed in settings.seeds]
            else:
                configurations += [configure(line, width, None, seed, LayerSpec(kind.name), width)
                                   for seed in settings.seeds]
    reference = parameter_count(task, overlay(base, {"spec": "dense"}, "reference"))
    return SweepPlan(settings, base, target_name(settings), lines, tuple(configurations), reference,
                     _probe_plan(settings, base))


def target_name(settings: SweepSettings) -> str:
    if settings.task == "nerf":
        return Path(settings.target or "lego").name
    return Path(settings.target).stem if settings.target else DEFAULT_SHAPE_NAME


def _probe_plan(settings: SweepSettings, base: RunConfig) -> dict | None:
    seconds, steps = settings.probe_s, settings.probe_steps
    if seconds is None and steps is None:
        seconds = base.time_budget_s * PROBE_BUDGET_FRACTION if base.time_budget_s else None
        steps = max(1, round(base.steps * PROBE_BUDGET_FRACTION)) if base.steps else None
    if seconds == 0 or steps == 0:
        return None
    lrs = settings.probe_lrs or tuple(float(f"{base.lr * factor:.3g}") for factor in PROBE_LR_FACTORS)
    return {"time_budget_s": seconds, "steps": steps, "lrs": list(lrs)}


# --- the sweep folder -------------------------------------------------------------------------------


def read_sweep(sweep_dir: str | Path) -> dict:
    """sweep.json of a sweep folder; one line when the folder is not a sweep."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise NeuralFieldsError(f"{sweep_dir} is not a sweep folder: {SWEEP_FILE} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NeuralFieldsError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None


def run_status(run_dir: Path) -> str:
    """pending (no folder), failed, finished, training (a live trainer holds it), interrupted (a
    checkpoint to resume from) or started (no checkpoint yet: it starts again)."""
    if not run_dir.is_dir():
        return "pending"
    if (run_dir / FAILED_FILE).is_file():
        return "failed"
    if (run_dir / storage.METRICS_FILE).is_file():
        return "finished"
    if storage.RunLock(run_dir).owner_alive():
        return "training"
    return "interrupted" if storage.latest_checkpoint(run_dir) else "started"


def default_sweep_root(plan: SweepPlan) -> Path:
    return Path(plan.base.output_root) / "rd" / f"{plan.task}-{plan.target_name}"


def find_sweep_to_resume(plan: SweepPlan) -> Path:
    """The newest sweep folder under the default root that holds every configuration of this plan,
    with the same settings (a sweep that grew holds more)."""
    root = default_sweep_root(plan)
    names = {configuration.name for configuration in plan.configurations}
    for folder in sorted(root.glob(f"*/{SWEEP_FILE}"), reverse=True):
        sweep = read_sweep(folder.parent)
        if not changed_settings(sweep, plan) \
                and names <= {configuration["name"] for configuration in sweep.get("configurations", [])}:
            return folder.parent
    raise NeuralFieldsError(f"no sweep with these settings under {root} to resume; name it with --out SWEEP_DIR")


def shard_of(plan: SweepPlan, shard: tuple[int, int]) -> tuple[Configuration, ...]:
    """Every N-th configuration, starting at the I-th (shard = (I, N), 1 <= I <= N)."""
    index, count = shard
    return plan.configurations[index - 1::count]


def changed_settings(sweep: dict, plan: SweepPlan) -> list[str]:
    """The measured settings outside GRID_SETTINGS in which a sweep.json differs from the plan."""
    saved = sweep.get("settings", {})
    return sorted(key for key, value in plan.settings.measured().items()
                  if key not in GRID_SETTINGS and saved.get(key) != value)


def check_sweep_dir(plan: SweepPlan, sweep_dir: Path | None, shard: tuple[int, int], resume: bool) -> None:
    """Refuse, before anything is written, a folder that is not this sweep's, runs that exist
    without --resume, and a shard that needs learning rates not yet chosen."""
    index, count = shard
    if not 1 <= index <= count:
        raise NeuralFieldsError(f"--shard I/N needs 1 <= I <= N, got {index}/{count}")
    if sweep_dir is None:
        if count > 1:
            raise NeuralFieldsError("--shard needs --out SWEEP_DIR: every shard writes into the same sweep folder")
        return
    if (sweep_dir / SWEEP_FILE).is_file():
        changed = changed_settings(read_sweep(sweep_dir), plan)
        if changed:
            raise NeuralFieldsError(f"{sweep_dir} holds a sweep with other settings ({', '.join(changed)}); "
                                    f"continue it with its own command (in {SWEEP_FILE}) or choose another --out")
    elif sweep_dir.exists() and (not sweep_dir.is_dir() or any(sweep_dir.iterdir())):
        raise NeuralFieldsError(f"{sweep_dir} is not a sweep folder ({SWEEP_FILE} is missing) and not empty")
    elif resume:
        raise NeuralFieldsError(f"nothing to resume: {sweep_dir} holds no sweep")
    probe_done = set(probe_groups(plan)) <= set(probed_learning_rates(sweep_dir))
    if plan.probe and not probe_done and index > 1:
        raise NeuralFieldsError(f"shard {index}/{count} runs at the learning rates that shard 1/{count} chooses, and "
                                f"{sweep_dir / PROBE_DIR / LR_FILE} does not hold every line and width yet: start this "
                                f"shard once it does, or pass --lr-probe-s 0")
    if not resume:
        folders = [sweep_dir / RUNS_DIR / c.name for c in shard_of(plan, shard)]
        if plan.probe and not probe_done:
            folders += [sweep_dir / PROBE_DIR / name for _, name, _ in probe_runs(plan)]
        existing = [folder for folder in folders if folder.exists()]
        if existing:
            raise NeuralFieldsError(f"{sweep_dir} already holds runs of this sweep (e.g. "
                                    f"{existing[0].relative_to(sweep_dir)}); continue it with --resume")


def open_sweep_dir(plan: SweepPlan, sweep_dir: Path | None, command: str) -> Path:
    """The sweep folder (a new timestamped one when None), with sweep.json recording the plan and
    this command."""
    if sweep_dir is None:
        sweep_dir = storage.create_run_dir(default_sweep_root(plan).parent, default_sweep_root(plan).name)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuralFieldsError(f"sweep folder {sweep_dir} is not writable: {exc.strerror}") from None
    record = plan.record()
    if (sweep_dir / SWEEP_FILE).is_file():
        record = grown_record(read_sweep(sweep_dir), record)
    storage.write_json(sweep_dir / SWEEP_FILE, {**record, "commands": [*record.get("commands", []), command]})
    return sweep_dir


def grown_record(saved: dict, planned: dict) -> dict:
    """The sweep.json of a folder continued by a plan of the same measured settings but perhaps
    more kinds, ranks, widths or seeds: the saved lines and configurations, then the plan's new
    ones (dense-equal stays the last line), and in the settings every value either named."""
    settings = dict(saved["settings"])
    for key in GRID_SETTINGS:
        values = list(settings.get(key, []))
        values += [value for value in planned["settings"][key] if value not in values]
        settings[key] = values if key == "kinds" else sorted(values)
    lines = {**saved["lines"], **planned["lines"]}
    if EQUAL_LINE in lines:
        lines[EQUAL_LINE] = lines.pop(EQUAL_LINE)
    known = {configuration["name"] for configuration in saved["configurations"]}
    configurations = saved["configurations"] + [c for c in planned["configurations"] if c["name"] not in known]
    return {**saved, "settings": settings, "lines": lines, "configurations": configurations}


def command_line(argv: list[str]) -> str:
    return shlex.join(["python", *argv])


# --- running ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str
    """trained, skipped (finished earlier), failed, or busy (another process trains it)."""
    metrics: dict | None = None
    message: str = ""


def error_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if isinstance(exc, NeuralFieldsError) else f"{type(exc).__name__}: {text}"


def train_configuration(task: str, config: RunConfig, run_dir: Path, progress: bool,
                        after: Callable[[Path], None] | None = None) -> Outcome:
    """Train one configuration in `run_dir` unless it finished or failed before: an interrupted run
    resumes from its checkpoint, a run with no checkpoint starts again. Any error is written to
    run_dir/failed.txt (its first line is the error line) and returned, not raised. `after` runs on
    the finished folder (the quantised evaluation), also for a run finished earlier that lacks it."""
    status = run_status(run_dir)
    if status == "failed":
        return Outcome("failed", message=(run_dir / FAILED_FILE).read_text().splitlines()[0])
    if status == "training":
        return Outcome("busy", message=f"{run_dir} is being trained by another process")
    train = TRAINERS[task].train
    try:
        if status == "interrupted":
            train({}, resume=run_dir, progress=progress)
        elif status != "finished":
            if status == "started":
                shutil.rmtree(run_dir)
            train(config, run_dir=run_dir, progress=progress)
        if after is not None:
            after(run_dir)
    except Exception as exc:  # noqa: BLE001 - one configuration failing must not stop the sweep
        message = error_line(exc)
        run_dir.mkdir(parents=True, exist_ok=True)
        details = "" if isinstance(exc, NeuralFieldsError) else "\n" + traceback.format_exc()
        (run_dir / FAILED_FILE).write_text(message + "\n" + details)
        return Outcome("failed", message=message)
    return Outcome("skipped" if status == "finished" else "trained", open_run(run_dir).metrics())


def write_quantized_results(run_dir: Path) -> None:
    """rd.json: the run's quality after fp16 and int8 storage, and the machine (kept while it
    matches the latest checkpoint)."""
    path = run_dir / RD_FILE
    run = open_run(run_dir)
    if path.is_file() and read_json(path).get("checkpoint") == run.checkpoints()[-1].name:
        return
    storage.write_json(path, {**quantized_results(run), "machine": machine_info()})


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def probe_group(line: str, sweep_width: int) -> str:
    """The probe group a configuration takes its learning rate from: its line at its sweep width."""
    return f"{line}-w{sweep_width}"


def probe_groups(plan: SweepPlan) -> dict[str, Configuration]:
    """Each probe group of the plan and the configuration it is probed on: its first (lowest rank
    named first, first seed)."""
    groups = {}
    for configuration in plan.configurations:
        groups.setdefault(configuration.probe_group, configuration)
    return groups


def probe_runs(plan: SweepPlan) -> list[tuple[str, str, RunConfig]]:
    """(probe group, folder name, config) of each probe run: every group's first configuration at
    each probed lr, on the probe's budget."""
    overrides = {**budget_values(plan.probe["time_budget_s"], plan.probe["steps"]),
                 **(NERF_PROBE_OVERRIDES if plan.task == "nerf" else {})}
    return [(group, f"{group}-lr{lr:g}", overlay(first.config, {**overrides, "lr": lr}, "lr probe"))
            for group, first in probe_groups(plan).items() for lr in plan.probe["lrs"]]


def probed_learning_rates(sweep_dir: Path) -> dict:
    """probe/lr.json of a sweep folder: probe group -> {"lr", "scores", "line", "configuration", ...}
    ({} before any probe)."""
    path = sweep_dir / PROBE_DIR / LR_FILE
    return read_json(path) if path.is_file() else {}


def choose_learning_rates(plan: SweepPlan, sweep_dir: Path, progress: bool = True) -> dict[str, float]:
    """The lr of each probe group (line and width): the probe's best, or the preset's when no probe
    runs or all of a group's probe runs failed. probe/lr.json keeps the choices: a group already in
    it is not probed again (a sweep continued with more lines or widths probes only the new ones)."""
    groups = probe_groups(plan)
    if plan.probe is None:
        return {group: plan.base.lr for group in groups}
    chosen = probed_learning_rates(sweep_dir)
    runs = [run for run in probe_runs(plan) if run[0] not in chosen]
    if runs:
        bar = progress_bar(total=len(runs), desc="lr probe", unit="run", disable=not progress)
        for group, name, config in runs:
            outcome = train_configuration(plan.task, config, sweep_dir / PROBE_DIR / name, progress)
            score = probe_score(open_run(sweep_dir / PROBE_DIR / name)) if outcome.metrics else None
            first = groups[group]
            entry = chosen.setdefault(group, {
                "lr": plan.base.lr, "metric": PROBE_METRIC[plan.task], "scores": {}, "failed": {},
                "line": first.line, "configuration": first.name})
            entry["scores"][f"{config.lr:g}"] = score
            if outcome.status == "failed":
                entry["failed"][f"{config.lr:g}"] = outcome.message
            bar.write(f"probe {name}: {PROBE_METRIC[plan.task]} {format_quality(plan.task, score)}"
                      + (f" (failed: {outcome.message})" if outcome.status == "failed" else ""))
            bar.update()
        bar.close()
        probed = {group for group, _, _ in runs}
        for group in probed:
            scored = {lr: score for lr, score in chosen[group]["scores"].items() if score is not None}
            if scored:
                chosen[group]["lr"] = float(max(scored, key=scored.get))
        # read again: a process probing other widths of the same sweep may have written meanwhile
        storage.write_json(sweep_dir / PROBE_DIR / LR_FILE,
                           {**probed_learning_rates(sweep_dir), **{group: chosen[group] for group in probed}})
    lrs = {group: float(chosen[group]["lr"]) for group in groups}
    print("learning rates: " + ", ".join(f"{group} {lr:g}" for group, lr in lrs.items()))
    return lrs


def run_sweep(plan: SweepPlan, sweep_dir: Path, shard: tuple[int, int] = (1, 1), progress: bool = True) -> None:
    """Train this shard's configurations (finished ones are skipped, interrupted ones resumed) and
    evaluate each after fp16/int8 storage; a failed run is recorded in its folder and the sweep goes on.
    Every line's lowest ranks run first, so that a sweep stopped early still compares every line."""
    lrs = choose_learning_rates(plan, sweep_dir, progress)
    todo = sorted(shard_of(plan, shard), key=lambda c: (c.rank or 0, c.sweep_width, c.seed))
    bar = progress_bar(total=len(todo), desc="sweep", unit="run", disable=not progress)
    for configuration in todo:
        config = overlay(configuration.config, {"lr": lrs[configuration.probe_group]}, "learning rate")
        outcome = train_configuration(plan.task, config, sweep_dir / RUNS_DIR / configuration.name, progress,
                                      after=write_quantized_results)
        bar.write(f"{configuration.name}: {describe(plan.task, outcome)}")
        bar.update()
    bar.close()


def describe(task: str, outcome: Outcome) -> str:
    """The line printed for a finished configuration: quality, parameters, seconds (or why not)."""
    if outcome.metrics is None:
        return f"{outcome.status}: {outcome.message}"
    metrics = outcome.metrics
    return (f"{QUALITY[task]} {format_quality(task, metrics[QUALITY[task]])}, {metrics['parameters']:,} parameters, "
            f"{metrics['train_seconds']:.0f} s, {metrics['steps']} steps"
            + (" (finished earlier)" if outcome.status == "skipped" else ""))
