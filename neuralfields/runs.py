"""Run folders as a library API: open any run folder and read what it holds.

    run = open_run("outputs/lego/sine-k1/20261127-120000")
    run.task, run.config            # "nerf", a NerfConfig (typed, older layouts upgraded)
    run.load_model("cpu")           # the task's model with the latest checkpoint's weights
    run.metrics()                   # metrics.json (None until the run has finished)

Export, the viewer and reports read runs through this module only; none of them takes the
training lock, so a run can be read while it trains. Adding a task means one entry in `TASKS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from neuralfields import storage
from neuralfields.config import RunConfig, load_run_config, saved_task
from neuralfields.errors import NeuralFieldsError
from neuralfields.training import nerf, occupancy, vit


@dataclass(frozen=True)
class TaskKind:
    """How to read one task's runs: its config type and the model its checkpoints load into."""

    config_type: type[RunConfig]
    build_model: Callable[[RunConfig, torch.device | str], nn.Module]


TASKS: dict[str, TaskKind] = {
    "nerf": TaskKind(nerf.NerfConfig, nerf.build_model),
    "occupancy": TaskKind(occupancy.OccupancyConfig, occupancy.build_model),
    "vit": TaskKind(vit.ViTConfig, vit.build_model),
}


@dataclass(frozen=True)
class Run:
    """One run folder: its path, task and typed config, and readers for what it holds."""

    path: Path
    task: str
    config: RunConfig

    def checkpoints(self) -> list[Path]:
        """Checkpoint folders, oldest first."""
        return storage.list_checkpoints(self.path)

    def metrics(self) -> dict | None:
        """metrics.json, or None when the run has not finished."""
        path = self.path / storage.METRICS_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise NeuralFieldsError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None

    def is_training(self) -> bool:
        """Whether a trainer holds the folder's lock (a stale lock does not count)."""
        return storage.RunLock(self.path).owner_alive()

    def load_model(self, device: torch.device | str = "cpu", checkpoint: str | Path | None = None) -> nn.Module:
        """The task's model (NeRF: FieldWithSampler; occupancy: OccupancyField) in eval mode, with
        the weights of `checkpoint` (default: the latest)."""
        checkpoint = checkpoint if checkpoint is not None else storage.latest_checkpoint(self.path)
        if checkpoint is None:
            raise NeuralFieldsError(f"{self.path} holds no checkpoint")
        model = TASKS[self.task].build_model(self.config, device)
        storage.load_checkpoint(checkpoint, model)
        return model.eval()


def open_run(path: str | Path) -> Run:
    """The run in a folder; one-line errors for a folder that is not a run or of an unknown task."""
    path = Path(path)
    task = saved_task(storage.load_config(path))
    if task not in TASKS:
        raise NeuralFieldsError(f"{path} is a run of unknown task {task!r} (known: {', '.join(TASKS)})")
    return Run(path, task, load_run_config(TASKS[task].config_type, path))
