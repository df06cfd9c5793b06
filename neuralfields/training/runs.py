"""Run folders: resolved config, atomic checkpoints, metrics JSON.

Layout of one run:
    <output_root>/<name parts...>/<YYYYmmdd-HHMMSS>/
        config.yaml
        checkpoints/step_0000500/{model.safetensors, state.pt}
        metrics.json, renders ...
A checkpoint is written into a hidden temporary folder and renamed into place, so a crash or
Ctrl-C during the write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from neuralfields.errors import NeuralFieldsError, NonFiniteLossError

CHECKPOINT_DIR = "checkpoints"
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
    _write_atomic(Path(run_dir) / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def load_config(run_dir: str | Path) -> dict:
    """The resolved config a run saved in its folder."""
    path = Path(run_dir) / "config.yaml"
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
        save_file(weights, tmp / "model.safetensors")
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
    """Load weights (and optimiser state when given) into place; returns (step, extra)."""
    ckpt_dir = Path(ckpt_dir)
    try:
        weights = load_file(ckpt_dir / "model.safetensors")
        state = torch.load(ckpt_dir / "state.pt", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError) as exc:
        raise NeuralFieldsError(f"cannot read checkpoint {ckpt_dir}: {exc}") from None
    device = next(model.parameters()).device
    model.load_state_dict({name: tensor.to(device) for name, tensor in weights.items()})
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), state.get("extra", {})


def check_finite(loss: torch.Tensor | float, step: int, run_dir: str | Path | None = None) -> None:
    """Stop a run whose loss became NaN or infinite, naming the checkpoint that is kept."""
    value = float(loss)
    if math.isfinite(value):
        return
    kept = latest_checkpoint(run_dir) if run_dir is not None else None
    where = f"; last good checkpoint kept in {kept}" if kept else "; no checkpoint had been written yet"
    raise NonFiniteLossError(f"loss became {value} at step {step}{where}")
