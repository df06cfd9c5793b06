"""The one training loop every task runs through, and the task contract it drives.

A task (NeRF, occupancy, ...) owns what is its own: building its model and data, one optimisation
step, a periodic validation and the final evaluation. The loop owns everything else: the
learning-rate schedule, step and time budgets, the progress bar, checkpoints (every
`checkpoint_every` steps, at the end and on Ctrl-C), the NaN/inf stop, resume, the one-writer
lock and metrics.json. Tools hook in through callbacks (`on_step`, `on_eval`, `on_checkpoint`):
the viewer, sweeps and adaptive-rank training use them; the library never imports those tools.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import nn

from neuralfields import storage
from neuralfields.config import RunConfig, to_mapping
from neuralfields.errors import NeuralFieldsError, NonFiniteLossError
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.oialr import oialr_schedule
from neuralfields.progress import progress_bar

BUDGET_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""The clocks a time budget can count (RunConfig.budget_clock)."""


class Task(Protocol):
    """What the loop needs of a task. `model` is what checkpoints hold; `train_step` runs one
    optimisation step (0-based index `step`) at the given learning rate and returns at least {"loss": float};
    `validate` runs every `validate_every` steps (a quick look, may return None); `evaluate`
    scores the final model and writes its files into the run folder, returning quality metrics."""

    config: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    validate_every: int | None

    def train_step(self, step: int, lr: float) -> dict: ...

    def validate(self, step: int, run_dir: Path) -> dict | None: ...

    def evaluate(self, run_dir: Path) -> dict: ...

    def checkpoint_state(self) -> dict: ...

    def restore_state(self, state: dict) -> None: ...

    def summary(self) -> dict: ...


class Callback:
    """Hooks into a training run; override what you need. `loop` is the running TrainingLoop."""

    def on_step(self, loop: TrainingLoop, stats: dict) -> None:
        """After every optimisation step (stats: the task's, e.g. loss and psnr)."""

    def on_eval(self, loop: TrainingLoop, metrics: dict) -> None:
        """After a periodic validation and after the final evaluation (metrics.json's content)."""

    def on_checkpoint(self, loop: TrainingLoop, path: Path) -> None:
        """After a checkpoint was written."""


def check_finite(loss: float, step: int, run_dir: str | Path | None = None) -> None:
    """Stop a run whose loss became NaN or infinite, naming the checkpoint that is kept."""
    if math.isfinite(loss):
        return
    kept = storage.latest_checkpoint(run_dir) if run_dir is not None else None
    where = f"; last good checkpoint kept in {kept}" if kept else "; no checkpoint had been written yet"
    raise NonFiniteLossError(f"loss became {loss} at step {step}{where}")


def step_hooks(model: nn.Module) -> list:
    """The per-step model hooks: the `after_optimizer_step(step, optimizer)` methods of the model's
    modules (e.g. adaptive-rank layers, which reshape their weights and the optimiser's state of
    them), called after each optimisation step with the number of steps taken so far (1-based).
    Collected once per loop: the set of modules does not change during training."""
    return [module.after_optimizer_step for module in model.modules()
            if callable(getattr(module, "after_optimizer_step", None))]


class TrainingLoop:
    """Runs a task in its run folder: `TrainingLoop(task, run_dir).run()` -> metrics."""

    def __init__(self, task: Task, run_dir: Path, callbacks: tuple[Callback, ...] = (), progress: bool = True,
                 resume: bool = False) -> None:
        self.task = task
        self.config = task.config
        self.run_dir = Path(run_dir)
        self.callbacks = tuple(callbacks)
        self.step_hooks = step_hooks(task.model)
        self.show_progress = progress
        self.step = 0
        self.train_seconds = 0.0  # on the budget's clock
        self.clock = BUDGET_CLOCKS[self.config.budget_clock]
        if self.config.budget_clock == "cpu" and next(task.model.parameters()).device.type != "cpu":
            raise NeuralFieldsError("budget_clock cpu counts CPU seconds, not GPU work: use budget_clock wall "
                                    "on a GPU")
        if resume:
            self._restore()

    def _restore(self) -> None:
        checkpoint = storage.latest_checkpoint(self.run_dir)
        if checkpoint is None:
            raise NeuralFieldsError(f"cannot resume {self.run_dir}: it holds no checkpoint")
        self.step, state = storage.load_checkpoint(checkpoint, self.task.model, self.task.optimizer)
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.task.restore_state(state)

    def progress(self) -> float:
        """Fraction of the run done: steps or training time, whichever is further."""
        done = [self.step / self.config.steps] if self.config.steps is not None else []
        if self.config.time_budget_s is not None:
            done.append(self.train_seconds / self.config.time_budget_s)
        return min(1.0, max(done))

    def learning_rate(self) -> float:
        """Exponential decay from lr to lr * lr_final_ratio over the run's progress."""
        return self.config.lr * self.config.lr_final_ratio ** self.progress()

    def checkpoint(self) -> Path:
        state = {"train_seconds": self.train_seconds, **self.task.checkpoint_state()}
        path = storage.save_checkpoint(self.run_dir, self.step, self.task.model, self.task.optimizer, state)
        for callback in self.callbacks:
            callback.on_checkpoint(self, path)
        return path

    def run(self) -> dict:
        """Train to the end of the budget, then evaluate and write metrics.json; returns the metrics."""
        self.train()
        return self.finish()

    def _bar(self) -> progress_bar:
        """Counts steps when the run is limited by steps only, else seconds of the time budget,
        so that the total shown is the real end of the run."""
        if self.config.time_budget_s is None:
            return progress_bar(total=self.config.steps, initial=self.step, desc="training", unit="step",
                                dynamic_ncols=True, mininterval=1.0, disable=not self.show_progress)
        return progress_bar(total=self.config.time_budget_s, initial=round(self.train_seconds, 1), desc="training",
                            unit="s", dynamic_ncols=True, mininterval=1.0, disable=not self.show_progress,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s train{postfix}")

    def train(self) -> None:
        """Optimise until the budget is spent (checkpoints, NaN stop, Ctrl-C), then checkpoint."""
        bar = self._bar()
        try:
            while self.progress() < 1.0:
                lr = self.learning_rate()
                started = self.clock()
                stats = self.task.train_step(self.step, lr)
                check_finite(float(stats["loss"]), self.step, self.run_dir)
                for hook in self.step_hooks:  # counted as training
                    hook(self.step + 1, self.task.optimizer)
                self.train_seconds += self.clock() - started
                self.step += 1
                bar.set_postfix(step=self.step, **self.task.summary(), refresh=False)
                done = self.step if self.config.time_budget_s is None else round(self.train_seconds, 1)
                bar.update(min(done, bar.total) - bar.n)
                for callback in self.callbacks:
                    callback.on_step(self, stats)
                every = self.task.validate_every
                if every and self.step % every == 0:
                    result = self.task.validate(self.step, self.run_dir)
                    if result is not None:
                        bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
                        for callback in self.callbacks:
                            callback.on_eval(self, result)
                if self.step % self.config.checkpoint_every == 0:
                    self.checkpoint()
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted: checkpoint saved in {self.checkpoint()}; continue with --resume {self.run_dir}")
            raise
        bar.close()
        self.checkpoint()

    def finish(self) -> dict:
        """The task's final evaluation with the run's counts: metrics.json, also returned."""
        report = parameter_report(self.task.model)
        quality = self.task.evaluate(self.run_dir)
        device = next(self.task.model.parameters()).device
        metrics = {
            "task": type(self.config).task, "spec": str(self.config.spec),
            "parameters": report["parameters"], "dense_parameters": report["dense_parameters"],
            "percent_of_dense": report["percent_of_dense"],
            "bytes": {"fp32": report["bytes_fp32"], "fp16": report["bytes_fp16"]},
            "train_seconds": round(self.train_seconds, 2), "budget_clock": self.config.budget_clock,
            "steps": self.step, "device": str(device),
            **quality,
        }
        storage.write_json(self.run_dir / storage.METRICS_FILE, metrics)
        for callback in self.callbacks:
            callback.on_eval(self, metrics)
        return metrics


def build_task(config: RunConfig, make_task: Callable[[], Task]) -> Task:
    """`make_task()` with the run's settings for building it: torch's CPU threads (`threads`) and
    the schedule of adaptive-rank layers (`oialr_warmup_steps`, `oialr_interval`)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    with oialr_schedule(config.oialr_warmup_steps, config.oialr_interval):
        return make_task()


def start_run(config: RunConfig, resume: str | Path | None = None, run_dir: str | Path | None = None) -> Path:
    """The run folder to train in: `resume` itself, else `run_dir` (made if missing; refused if it
    already holds a run), else a new timestamped folder under output_root/run_name."""
    if resume is not None:
        return Path(resume)
    if run_dir is None:
        return storage.create_run_dir(config.output_root, *config.run_name)
    run_dir = Path(run_dir)
    if (run_dir / storage.CONFIG_FILE).exists():
        raise NeuralFieldsError(f"{run_dir} already holds a run; resume it or choose another folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuralFieldsError(f"run folder {run_dir} is not writable: {exc.strerror}") from None
    return run_dir


def train_in_folder(run_dir: Path, config: RunConfig, make_task: Callable[[], Task], resume: bool = False,
                    callbacks: tuple[Callback, ...] = (), progress: bool = True) -> dict:
    """Take the folder's lock, save the config, build the task and run the loop; returns the metrics.
    The task is built by `build_task` (threads, adaptive-rank schedule)."""
    with storage.RunLock(run_dir):
        storage.save_config(run_dir, to_mapping(config))
        task = build_task(config, make_task)
        loop = TrainingLoop(task, run_dir, callbacks, progress, resume)
        report = parameter_report(task.model)
        print(f"model: {config.spec}, {report['parameters']:,} parameters "
              f"({report['percent_of_dense']:.2f}% of dense {report['dense_parameters']:,}); "
              f"budget: {config.describe_budget()}")
        print(f"run folder: {run_dir}" + (f" (resuming at step {loop.step})" if resume else ""))
        return loop.run()
