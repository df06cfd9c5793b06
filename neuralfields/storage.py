"""The files of a run folder, written safely: atomic JSON/YAML, atomic checkpoints, the writer's lock.

Layout of one run (see docs/architecture.md; `neuralfields.runs` reads it):
    <output_root>/<name parts...>/<YYYYmmdd-HHMMSS>/
        config.yaml                      the resolved config, with its `task`
        checkpoints/step_0000500/{model.safetensors, state.pt}
        metrics.json, renders ...
        .lock                            while a trainer writes the folder (host and pid)
A checkpoint is written into a hidden temporary folder and renamed into place, so a crash or
Ctrl-C during the write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import socket
import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from neuralfields.errors import NeuralFieldsError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
_STEP_PREFIX = "step_"


def create_run_dir(output_root: str | Path, *name_parts: str) -> Path:
    """A new timestamped run folder under output_root/name_parts (suffixed if the name is taken)."""
    parent = Path(output_root).joinpath(*name_parts)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = parent / stamp
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = parent / f"{stamp}-{suffix}"
        run_dir.mkdir()
    except OSError as exc:
        raise NeuralFieldsError(f"output folder {parent} is not writable: {exc.strerror}") from None
    return run_dir


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    _write_atomic(Path(path), json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_config(run_dir: str | Path, config: dict) -> None:
    _write_atomic(Path(run_dir) / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))


def load_config(run_dir: str | Path) -> dict:
    """The resolved config a run saved in its folder, as plain values."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise NeuralFieldsError(f"{run_dir} is not a run folder: {path.name} is missing")
    return read_yaml_mapping(path)


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file holding a mapping (config presets, run configs), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise NeuralFieldsError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise NeuralFieldsError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise NeuralFieldsError(f"{path} must hold a mapping of config keys")
    return data


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict | None = None,
    keep: int = 2,
) -> Path:
    """Save weights (safetensors) and training state atomically; keep the newest `keep` checkpoints."""
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_STEP_PREFIX}{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(weights, tmp / MODEL_FILE)
        state = {"step": step, "extra": extra or {}}
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        torch.save(state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(_STEP_PREFIX))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = _checkpoints(Path(run_dir) / CHECKPOINT_DIR)
    return found[-1] if found else None


def load_checkpoint(
    ckpt_dir: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> tuple[int, dict]:
    """Load weights (and optimiser state when given) into place; returns (step, extra).
    Readers that want only the weights (optimizer None) also accept a checkpoint whose training
    state (state.pt) was left out, as in the published runs under benchmarks/results/rd/."""
    ckpt_dir = Path(ckpt_dir)
    try:
        weights = load_file(ckpt_dir / MODEL_FILE)
        if optimizer is None and not (ckpt_dir / "state.pt").exists():
            state = {"step": int(ckpt_dir.name.removeprefix(_STEP_PREFIX))}
        else:
            state = torch.load(ckpt_dir / "state.pt", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, ValueError) as exc:
        raise NeuralFieldsError(f"cannot read checkpoint {ckpt_dir}: {exc}") from None
    device = next(model.parameters()).device
    model.load_state_dict({name: tensor.to(device) for name, tensor in weights.items()})
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), state.get("extra", {})


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint folders, oldest first."""
    return _checkpoints(Path(run_dir) / CHECKPOINT_DIR)


class RunLock:
    """The one-writer lock of a run folder: a file naming the host and pid of the trainer.

    A second trainer (or a resume) of a folder that is being trained is refused; a lock left by a
    process that is gone (same host, pid no longer running) is taken over with a note. Readers
    (export, viewer, reports) never take it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> RunLock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if self.owner_alive():
                    raise NeuralFieldsError(
                        f"{self.path.parent} is being trained by pid {owner[1]} on {owner[0]} "
                        f"(lock file {self.path}); wait for it or stop it first") from None
                print(f"note: taking over the stale lock of {self.path.parent} "
                      f"(its process {owner[1] if owner else '?'} is gone)")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me + "\n")
            self.held = True
            return self
        raise NeuralFieldsError(f"cannot lock {self.path.parent}: another process keeps taking the lock")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def owner_alive(self) -> bool:
        """Whether the lock file names a process that still runs."""
        owner = self._owner()
        return owner is not None and self._alive(*owner)

    def _owner(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(host: str, pid: int) -> bool:
        """Whether the lock's process runs; a lock from another host is assumed live."""
        if host != socket.gethostname():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
