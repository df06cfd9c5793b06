"""Multi-process training under `torchrun` (DistributedDataParallel) through the shared loop.

    torchrun --nproc_per_node 2 scripts/train_vit.py --spec sine:4      # gloo on CPU, nccl on GPUs

A task that supports it calls `from_environment(config.device)`: None outside torchrun, else the
process group of this process (rank, world size, device: cuda:LOCAL_RANK with nccl when CUDA is
used, the CPU with gloo otherwise). `train_distributed` then runs the shared `TrainingLoop` on every
rank: rank 0 through `train_in_folder` (lock, config, checkpoints, metrics.json, progress bar),
the other ranks through `FollowerLoop`, the same loop writing nothing. Every rank restores the same
checkpoint on resume. The loop ends a run at a step limit or a time budget; the time is measured
on rank 0 and broadcast after every step (`SyncTrainingTime`), so all ranks stop at the same step.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from neuralfields.config import RunConfig
from neuralfields.errors import NeuralFieldsError
from neuralfields.training.loop import Callback, Task, TrainingLoop, build_task, start_run, train_in_folder

TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the process group."""

    rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def all_gather_object(self, value: Any) -> list:
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the ranks."""
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world_size

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def from_environment(device_name: str = "auto") -> Distributed | None:
    """The process group when launched by torchrun (WORLD_SIZE > 1), else None."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    if device_name not in ("auto", "cpu", "cuda"):
        raise NeuralFieldsError(f"under torchrun each process picks its own device: use --device auto, cpu or cuda, "
                                f"not {device_name!r}")
    if device_name == "cuda" and not torch.cuda.is_available():
        raise NeuralFieldsError("device 'cuda' requested but no CUDA GPU is available")
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise NeuralFieldsError(f"process {local_rank} of this machine has no GPU of its own "
                                    f"({torch.cuda.device_count()} GPUs); start at most that many processes")
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return Distributed(rank, world_size, device, backend)


class SyncTrainingTime(Callback):
    """After every step, every rank takes rank 0's training time, so budgets end runs in step."""

    def __init__(self, group: Distributed) -> None:
        self.group = group

    def on_step(self, loop: TrainingLoop, stats: dict) -> None:
        seconds = torch.tensor([loop.train_seconds], dtype=torch.float64, device=self.group.device)
        dist.broadcast(seconds, src=0)
        loop.train_seconds = float(seconds.item())


class FollowerLoop(TrainingLoop):
    """The shared loop on ranks other than 0: the same steps, schedule and stop, no files written."""

    def checkpoint(self) -> Path:
        return self.run_dir


def train_distributed(group: Distributed, config: RunConfig, make_task: Callable[[], Task],
                      resume: str | Path | None = None, callbacks: tuple[Callback, ...] = (), progress: bool = True,
                      run_dir: str | Path | None = None, after_training: Callable[[Task], None] | None = None,
                      ) -> tuple[Path, dict | None]:
    """Run one training run on every rank of `group`; returns (run folder, metrics on rank 0 /
    None on the others). `after_training(task)` runs on ranks other than 0 when their training
    is done, while rank 0 evaluates (for collectives the task's evaluate expects)."""
    folder: str | None = None
    failure: str | None = None
    if group.is_main:
        try:
            folder = str(start_run(config, resume, run_dir))
        except NeuralFieldsError as exc:
            failure = str(exc)
    folder, failure = group.broadcast_object((folder, failure))
    if failure is not None:
        raise NeuralFieldsError(failure)
    folder = Path(folder)
    sync = SyncTrainingTime(group)
    if group.is_main:
        return folder, train_in_folder(folder, config, make_task, resume is not None, (sync, *callbacks), progress)
    task = build_task(config, make_task)
    FollowerLoop(task, folder, (sync,), progress=False, resume=resume is not None).train()
    if after_training is not None:
        after_training(task)
    return folder, None
