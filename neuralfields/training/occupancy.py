"""Occupancy-network training and evaluation as library functions (scripts stay thin).

One run: load and normalise the mesh (or build the embedded default shape), draw cached
training points with inside labels, fit an `OccupancyField` with BCE-with-logits and Adam
for `steps` steps or `max_seconds` of training (whichever ends first; the learning rate
decays exponentially to `lr * lr_final_ratio` over that span), checkpoint, then evaluate
(see `neuralfields.meshing.metrics` for the protocols) and write the extracted mesh in the
mesh's original coordinates plus `metrics.json` into the run folder.
"""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from tqdm.auto import tqdm

from neuralfields.device import resolve_device
from neuralfields.errors import NeuralFieldsError
from neuralfields.fields.occupancy import OccupancyField
from neuralfields.layers.counting import parameter_report
from neuralfields.layers.spec import LayerSpec
from neuralfields.meshing import metrics
from neuralfields.meshing.labels import MeshOccupancy, SampleSpec, cached_training_points
from neuralfields.meshing.marching import OCCUPANCY_LOGIT_LEVEL, evaluate_grid, grid_points, mesh_from_volume
from neuralfields.meshing.mesh_io import (
    PADDED_BOUNDS, Normalization, export_mesh, file_digest, load_mesh, normalize_mesh,
)
from neuralfields.meshing.shapes import DEFAULT_SHAPE_NAME, default_shape
from neuralfields.training.runs import (
    check_finite, latest_checkpoint, load_checkpoint, load_config, save_checkpoint, save_config, write_json,
)

TASK = "occupancy"
DEFAULT_OMEGA = 100.0  # the reference occupancy networks' omega

DEFAULT_CONFIG: dict = {
    "task": TASK,
    "mesh": None,  # path; None -> embedded default shape
    "spec": "sine:1@100",
    "model": {"hidden_dim": 256, "num_layers": 3, "activation": "gaussian:0.1", "pe_freqs": 0},
    "samples": {"num_uniform": 500_000, "num_surface": 1_000_000, "noise_scales": [0.01, 0.003], "seed": 0},
    "train": {
        "steps": 2000, "max_seconds": None, "batch_size": 8192, "lr": 1e-3, "lr_final_ratio": 0.1,
        "checkpoint_every": 500, "seed": 0,
    },
    "eval": {"uniform_points": 100_000, "grid_resolution": 128, "surface_samples": 100_000},
    "device": "auto",
    "cache_dir": "outputs/cache/occupancy",
}


def resolve_config(overrides: dict | None = None, base: dict | None = None) -> dict:
    """`base` (default: DEFAULT_CONFIG) updated section by section with `overrides`."""
    config = copy.deepcopy(base if base is not None else DEFAULT_CONFIG)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_CONFIG:
            raise NeuralFieldsError(f"unknown occupancy config key '{key}'")
        if isinstance(DEFAULT_CONFIG[key], dict):
            if not isinstance(value, dict):
                raise NeuralFieldsError(f"occupancy config key '{key}' must be a mapping")
            unknown = set(value) - set(DEFAULT_CONFIG[key])
            if unknown:
                raise NeuralFieldsError(f"unknown occupancy config key '{key}.{sorted(unknown)[0]}'")
            config[key].update(value)
        else:
            config[key] = value
    try:
        config["spec"] = str(LayerSpec.parse(str(config["spec"])).with_default_omega(DEFAULT_OMEGA))
    except ValueError as exc:
        raise NeuralFieldsError(f"occupancy config key 'spec': {exc}") from None
    for (section, key), minimum in _MINIMUMS.items():
        value = config[section][key]
        if value is None and (section, key) == ("train", "max_seconds"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise NeuralFieldsError(
                f"occupancy config key '{section}.{key}' must be a number >= {minimum:g}, got {value!r}"
            )
    return config


# Smallest allowed value of each numeric config entry (positive where zero makes no sense).
_MINIMUMS = {
    ("model", "hidden_dim"): 1, ("model", "num_layers"): 1, ("model", "pe_freqs"): 0,
    ("samples", "num_uniform"): 0, ("samples", "num_surface"): 1,
    ("train", "steps"): 1, ("train", "max_seconds"): 1e-3, ("train", "batch_size"): 1,
    ("train", "lr"): 1e-12, ("train", "lr_final_ratio"): 1e-12, ("train", "checkpoint_every"): 1,
    ("eval", "uniform_points"): 1, ("eval", "grid_resolution"): 2, ("eval", "surface_samples"): 1,
}


def mesh_name(config: dict) -> str:
    return Path(config["mesh"]).stem if config["mesh"] else DEFAULT_SHAPE_NAME


def build_field(config: dict) -> OccupancyField:
    model = config["model"]
    try:
        return OccupancyField(
            LayerSpec.parse(config["spec"]), model["hidden_dim"], model["num_layers"],
            model["activation"], model["pe_freqs"],
        )
    except ValueError as exc:
        raise NeuralFieldsError(f"bad occupancy model config: {exc}") from None


def prepare_mesh(config: dict) -> tuple[trimesh.Trimesh, Normalization, str]:
    """(mesh in the unit cube, its normalisation, a digest that keys the label cache)."""
    if config["mesh"]:
        original = load_mesh(config["mesh"])
        digest = file_digest(config["mesh"])
    else:
        original = default_shape()
        digest = "default-" + _array_digest(original.vertices, original.faces)
    unit, normalization = normalize_mesh(original)
    return unit, normalization, digest


def _array_digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def predict_logits(field: OccupancyField, points: np.ndarray, chunk_size: int = 65536) -> np.ndarray:
    """Field logits for (N, 3) unit-cube points, in chunks, without autograd."""
    device = next(field.parameters()).device
    out = np.empty(len(points), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(points), chunk_size):
            chunk = torch.from_numpy(np.ascontiguousarray(points[start : start + chunk_size])).to(device)
            out[start : start + chunk_size] = field(chunk).float().cpu().numpy()
    return out


def learning_rate(train: dict, step: int, elapsed: float) -> float:
    """Exponential decay from lr to lr * lr_final_ratio over the run (steps or time budget)."""
    progress = step / max(train["steps"], 1)
    if train["max_seconds"]:
        progress = max(progress, elapsed / train["max_seconds"])
    return train["lr"] * train["lr_final_ratio"] ** min(progress, 1.0)


def train_occupancy(config: dict, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) one occupancy run in `run_dir`; returns the metrics written to metrics.json."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuralFieldsError(f"run folder {run_dir} is not writable: {exc.strerror}") from None
    device = resolve_device(config["device"])
    unit_mesh, normalization, digest = prepare_mesh(config)
    config = {**config, "normalization": normalization.to_dict()}
    save_config(run_dir, config)

    sample_spec = SampleSpec(
        num_uniform=config["samples"]["num_uniform"], num_surface=config["samples"]["num_surface"],
        noise_scales=tuple(config["samples"]["noise_scales"]), seed=config["samples"]["seed"],
    )
    points, labels = cached_training_points(unit_mesh, digest, sample_spec, config["cache_dir"])
    points = torch.from_numpy(points).to(device)
    labels = torch.from_numpy(labels).to(device=device, dtype=torch.float32)

    train = config["train"]
    torch.manual_seed(train["seed"])
    field = build_field(config).to(device)
    optimizer = torch.optim.Adam(field.parameters(), lr=train["lr"])
    step, elapsed = 0, 0.0
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise NeuralFieldsError(f"cannot resume: no checkpoint in {run_dir}")
        step, extra = load_checkpoint(checkpoint, field, optimizer)
        elapsed = float(extra.get("train_seconds", 0.0))

    generator = torch.Generator(device=device).manual_seed(train["seed"] + step)
    loss = None
    budget = f" ({train['max_seconds']:g} s budget)" if train["max_seconds"] else ""
    bar = tqdm(
        total=None if budget else train["steps"], initial=step, unit="step",
        desc=f"occupancy {config['spec']}{budget}", disable=not progress,
    )
    started = time.perf_counter() - elapsed
    try:
        while step < train["steps"] and not (train["max_seconds"] and elapsed >= train["max_seconds"]):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(train, step, elapsed)
            batch = torch.randint(0, len(points), (train["batch_size"],), device=device, generator=generator)
            loss = F.binary_cross_entropy_with_logits(field(points[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            check_finite(loss.item(), step, run_dir)
            elapsed = time.perf_counter() - started
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % train["checkpoint_every"] == 0:
                save_checkpoint(run_dir, step, field, optimizer, {"train_seconds": elapsed})
    except KeyboardInterrupt:
        bar.close()
        saved = save_checkpoint(run_dir, step, field, optimizer, {"train_seconds": elapsed})
        print(f"interrupted: checkpoint saved in {saved}; continue with --resume {run_dir}")
        raise
    bar.close()
    save_checkpoint(run_dir, step, field, optimizer, {"train_seconds": elapsed})

    result = {
        "task": TASK, "mesh": mesh_name(config), "spec": config["spec"],
        "activation": config["model"]["activation"], "pe_freqs": config["model"]["pe_freqs"],
        "steps": step, "train_seconds": round(elapsed, 2), "final_loss": loss.item() if loss is not None else None,
        "device": str(device),
    }
    evaluation, mesh = evaluate_field(field, unit_mesh, config["eval"], progress=progress)
    if mesh is not None:
        export_mesh(normalization.mesh_to_original(mesh), run_dir / "mesh.ply")
    report = parameter_report(field)
    report.pop("layers")
    result.update(evaluation)
    result.update(report)
    write_json(run_dir / "metrics.json", result)
    return result


def evaluate_field(
    field: OccupancyField, unit_mesh: trimesh.Trimesh, eval_config: dict, progress: bool = True
) -> tuple[dict, trimesh.Trimesh | None]:
    """(IoU of both protocols, Chamfer-L1, normal consistency; the extracted unit-cube mesh).

    The mesh is None (and the surface metrics too) when the field has no surface in the cube.
    """
    field.eval()
    occupancy = MeshOccupancy(unit_mesh)
    started = time.perf_counter()
    uniform = metrics.uniform_iou(
        lambda p: predict_logits(field, p) > OCCUPANCY_LOGIT_LEVEL, occupancy, eval_config["uniform_points"]
    )
    resolution = eval_config["grid_resolution"]
    device = next(field.parameters()).device
    volume = evaluate_grid(field, PADDED_BOUNDS, resolution, device=device, progress=progress)
    true_grid = occupancy(grid_points(PADDED_BOUNDS, resolution).reshape(-1, 3)).reshape(volume.shape)
    result = {
        "iou_uniform": uniform,
        f"iou_grid_{resolution}": metrics.iou(volume > OCCUPANCY_LOGIT_LEVEL, true_grid),
    }
    try:
        mesh = mesh_from_volume(volume, PADDED_BOUNDS, OCCUPANCY_LOGIT_LEVEL)
    except NeuralFieldsError:
        mesh = None  # the field predicts all-inside or all-outside: no surface
    if mesh is not None:
        result.update(metrics.surface_metrics(mesh, unit_mesh, eval_config["surface_samples"]))
    else:
        result.update({"chamfer_l1": None, "normal_consistency": None})
    result["eval_seconds"] = round(time.perf_counter() - started, 2)
    return result, mesh


def load_occupancy_run(run_dir: str | Path) -> tuple[OccupancyField, dict, Normalization]:
    """(field with the latest checkpoint's weights, config, normalisation) of a finished run."""
    config = load_occupancy_config(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise NeuralFieldsError(f"no checkpoint in {run_dir}")
    field = build_field(config)
    load_checkpoint(checkpoint, field)
    field.eval()
    return field, config, Normalization.from_dict(config["normalization"])


def load_occupancy_config(run_dir: str | Path) -> dict:
    """The saved config of an occupancy run folder (refuses other kinds of run)."""
    config = load_config(run_dir)
    if not isinstance(config, dict) or config.get("task") != TASK:
        raise NeuralFieldsError(f"{run_dir} is not an occupancy run (its config.yaml has no 'task: {TASK}')")
    return config
