"""The occupancy task: fit an occupancy network to a mesh and extract its surface.

One run: load and normalise the mesh (or build the embedded default shape), draw cached training
points with inside labels, fit an `OccupancyField` with BCE-with-logits and Adam (the shared loop
owns budgets, schedule and checkpoints), then evaluate (see `neuralfields.meshing.metrics` for
the protocols) and write the extracted mesh in the mesh's original coordinates. The mesh's
normalisation is saved as normalization.json so the run can be meshed again without the mesh.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from neuralfields import storage
from neuralfields.config import RunConfig, load_run_config, setting
from neuralfields.config import load_preset as load_task_preset
from neuralfields.device import resolve_device
from neuralfields.errors import NeuralFieldsError
from neuralfields.fields.occupancy import OccupancyField
from neuralfields.layers.fused import layer_path_description
from neuralfields.meshing import metrics as shape_metrics
from neuralfields.meshing.labels import MeshOccupancy, SampleSpec, cached_training_points
from neuralfields.meshing.marching import (
    OCCUPANCY_LOGIT_LEVEL, evaluate_grid, evaluate_points, grid_points, mesh_from_volume,
)
from neuralfields.meshing.mesh_io import (
    PADDED_BOUNDS, Normalization, export_mesh, file_digest, load_mesh, normalize_mesh,
)
from neuralfields.meshing.shapes import DEFAULT_SHAPE_NAME, default_shape
from neuralfields.training.loop import Callback, start_run, train_in_folder

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "occupancy"
NORMALIZATION_FILE = "normalization.json"


@dataclass(frozen=True)
class OccupancyConfig(RunConfig):
    """Reference set-up: raw xyz into a dense input layer, `num_layers - 1` hidden layers from the
    spec, a dense output logit, Gaussian activations (sigma 0.1)."""

    task: ClassVar[str] = "occupancy"
    steps: int | None = setting(2000, "training steps (null: no step limit)", minimum=1)
    lr: float = setting(1e-3, "initial learning rate", minimum=0, above=True)
    checkpoint_every: int = setting(500, "steps between checkpoints", minimum=1)
    mesh: str | None = setting(None, "mesh file (OBJ, PLY, STL, OFF, GLB); null: the built-in shape")
    # model
    width: int = setting(256, "hidden width", minimum=1)
    num_layers: int = setting(3, "hidden layers", minimum=1)
    activation: str = setting("gaussian:0.1", "hidden activation: gaussian[:SIGMA], relu or softplus")
    pe_freqs: int = setting(0, "positional-encoding frequencies (0: raw xyz)", minimum=0)
    # training points
    num_uniform: int = setting(500_000, "training points uniform in the padded cube", minimum=0)
    num_surface: int = setting(1_000_000, "training points near the surface", minimum=1)
    noise_scales: list[float] = setting([0.01, 0.003], "noise of near-surface points (unit-cube lengths)", minimum=0)
    sample_seed: int = setting(0, "seed of the training points", minimum=0)
    batch_size: int = setting(8192, "points per step", minimum=1)
    cache_dir: str = setting("outputs/cache/occupancy", "cache of labelled training points")
    # evaluation
    eval_uniform_points: int = setting(100_000, "points of the uniform IoU", minimum=1)
    eval_grid_resolution: int = setting(128, "grid of the grid IoU and the extracted mesh", minimum=2)
    eval_surface_samples: int = setting(100_000, "surface samples of Chamfer and normal consistency", minimum=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.spec.check_rank(self.width)

    @property
    def mesh_name(self) -> str:
        return Path(self.mesh).stem if self.mesh else DEFAULT_SHAPE_NAME

    @property
    def run_name(self) -> tuple[str, ...]:
        return "occupancy", self.mesh_name, self.spec.label

    @staticmethod
    def upgrade(values: dict) -> dict:
        """A config.yaml of the nested layout (model/samples/train/eval sections) in today's keys."""
        if not any(isinstance(values.get(section), dict) for section in ("model", "samples", "train", "eval")):
            return values
        model, samples = values.get("model", {}), values.get("samples", {})
        train, evaluation = values.get("train", {}), values.get("eval", {})
        flat = {"task": values["task"], "spec": values.get("spec"), "mesh": values.get("mesh"),
                "device": values.get("device"), "cache_dir": values.get("cache_dir"),
                "width": model.get("hidden_dim"), "num_layers": model.get("num_layers"),
                "activation": model.get("activation"), "pe_freqs": model.get("pe_freqs"),
                "num_uniform": samples.get("num_uniform"), "num_surface": samples.get("num_surface"),
                "noise_scales": samples.get("noise_scales"), "sample_seed": samples.get("seed"),
                "steps": train.get("steps"), "time_budget_s": train.get("max_seconds"),
                "batch_size": train.get("batch_size"), "lr": train.get("lr"),
                "lr_final_ratio": train.get("lr_final_ratio"), "checkpoint_every": train.get("checkpoint_every"),
                "seed": train.get("seed"), "eval_uniform_points": evaluation.get("uniform_points"),
                "eval_grid_resolution": evaluation.get("grid_resolution"),
                "eval_surface_samples": evaluation.get("surface_samples")}
        return {key: value for key, value in flat.items() if value is not None or key == "time_budget_s"}


def load_preset(name_or_path: str) -> OccupancyConfig:
    """`default`, `relu_pe` from configs/occupancy/, or a YAML path, over OccupancyConfig's defaults."""
    return load_task_preset(OccupancyConfig, PRESET_DIR, name_or_path)


def build_model(config: OccupancyConfig, device: torch.device | str = "cpu") -> OccupancyField:
    """The (untrained) occupancy network of a run on `device`; checkpoints load into it."""
    return OccupancyField(config.spec, config.width, config.num_layers, config.activation,
                          config.pe_freqs).to(device)


def prepare_mesh(config: OccupancyConfig) -> tuple[trimesh.Trimesh, Normalization, str]:
    """(mesh in the unit cube, its normalisation, a digest that keys the label cache)."""
    if config.mesh:
        original = load_mesh(config.mesh)
        digest = file_digest(config.mesh)
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


def load_normalization(run_dir: str | Path) -> Normalization:
    """How a run's mesh was moved into the unit cube (older runs kept it in config.yaml)."""
    path = Path(run_dir) / NORMALIZATION_FILE
    if path.is_file():
        return Normalization.from_dict(json.loads(path.read_text()))
    saved = storage.load_config(run_dir).get("normalization")
    if saved is None:
        raise NeuralFieldsError(f"{run_dir} holds no {NORMALIZATION_FILE}")
    return Normalization.from_dict(saved)


class OccupancyTask:
    """One occupancy optimisation on labelled points (the loop's `Task`)."""

    validate_every = None

    def __init__(self, config: OccupancyConfig, device: torch.device, unit_mesh: trimesh.Trimesh,
                 normalization: Normalization, digest: str) -> None:
        self.config = config
        self.device = device
        self.unit_mesh = unit_mesh
        self.normalization = normalization
        sample_spec = SampleSpec(num_uniform=config.num_uniform, num_surface=config.num_surface,
                                 noise_scales=tuple(config.noise_scales), seed=config.sample_seed)
        points, labels = cached_training_points(unit_mesh, digest, sample_spec, config.cache_dir)
        self.points = torch.from_numpy(points).to(device)
        self.labels = torch.from_numpy(labels).to(device=device, dtype=torch.float32)
        torch.manual_seed(config.seed)
        self.model = build_model(config, device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generator: torch.Generator | None = None
        self.last_loss: float | None = None

    def train_step(self, step: int, lr: float) -> dict:
        if self.generator is None:  # seeded by the first step, so a resumed run draws new batches
            self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed + step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = torch.randint(0, len(self.points), (self.config.batch_size,), device=self.device,
                              generator=self.generator)
        loss = F.binary_cross_entropy_with_logits(self.model(self.points[batch]), self.labels[batch])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.last_loss = loss.item()
        return {"loss": self.last_loss}

    def summary(self) -> dict:
        return {"loss": f"{self.last_loss:.4f}"} if self.last_loss is not None else {}

    def checkpoint_state(self) -> dict:
        return {}

    def restore_state(self, state: dict) -> None:
        """Nothing beyond the weights, the optimiser and the step."""

    def validate(self, step: int, run_dir: Path) -> None:
        """Occupancy runs are scored once, at the end."""

    def evaluate(self, run_dir: Path) -> dict:
        """IoU, Chamfer-L1 and normal consistency; writes mesh.ply in the mesh's coordinates."""
        quality, mesh = evaluate_field(self.model, self.unit_mesh, self.config)
        if mesh is not None:
            export_mesh(self.normalization.mesh_to_original(mesh), run_dir / "mesh.ply")
        return {"mesh": self.config.mesh_name, "activation": self.config.activation,
                "pe_freqs": self.config.pe_freqs, "final_loss": self.last_loss, **quality}


def evaluate_field(field: OccupancyField, unit_mesh: trimesh.Trimesh, config: OccupancyConfig,
                   progress: bool = True) -> tuple[dict, trimesh.Trimesh | None]:
    """(IoU of both protocols, Chamfer-L1, normal consistency; the extracted unit-cube mesh).

    The mesh is None (and the surface metrics too) when the field has no surface in the cube.
    """
    field.eval()
    occupancy = MeshOccupancy(unit_mesh)
    device = next(field.parameters()).device
    started = time.perf_counter()
    uniform = shape_metrics.uniform_iou(
        lambda p: evaluate_points(field, p, device=device) > OCCUPANCY_LOGIT_LEVEL, occupancy,
        config.eval_uniform_points,
    )
    resolution = config.eval_grid_resolution
    volume = evaluate_grid(field, PADDED_BOUNDS, resolution, device=device, progress=progress)
    true_grid = occupancy(grid_points(PADDED_BOUNDS, resolution).reshape(-1, 3)).reshape(volume.shape)
    result = {"iou_uniform": uniform, "iou_grid": shape_metrics.iou(volume > OCCUPANCY_LOGIT_LEVEL, true_grid),
              "iou_grid_resolution": resolution}
    try:
        mesh = mesh_from_volume(volume, PADDED_BOUNDS, OCCUPANCY_LOGIT_LEVEL)
    except NeuralFieldsError:
        mesh = None  # the field predicts all-inside or all-outside: no surface
    if mesh is not None:
        result.update(shape_metrics.surface_metrics(mesh, unit_mesh, config.eval_surface_samples))
    else:
        result.update({"chamfer_l1": None, "normal_consistency": None})
    result["eval_seconds"] = round(time.perf_counter() - started, 2)
    return result, mesh


def train_occupancy(config: OccupancyConfig | dict, resume: str | Path | None = None,
                    callbacks: tuple[Callback, ...] = (), progress: bool = True, run_dir: str | Path | None = None,
                    ) -> tuple[Path, dict]:
    """Train (or, with `resume`, continue) one occupancy run; returns (run folder, metrics).

    With `resume`, `config` is a dict of overrides (e.g. steps, time_budget_s) for the run's saved
    config. The mesh is read and the device checked before a new run folder is made, so bad input
    leaves nothing behind. `run_dir` names the new run's folder (default: a timestamped one under
    output_root/run_name).
    """
    if resume is not None:
        config = load_run_config(OccupancyConfig, resume, overrides=config)
    device = resolve_device(config.device)
    unit_mesh, normalization, digest = prepare_mesh(config)
    if resume is not None:
        normalization = load_normalization(resume)  # as saved, also by runs of the older layout
    run_dir = start_run(config, resume, run_dir)

    def make_task() -> OccupancyTask:
        storage.write_json(run_dir / NORMALIZATION_FILE, normalization.to_dict())
        print(f"device: {device}; mesh: {config.mesh or DEFAULT_SHAPE_NAME}")
        task = OccupancyTask(config, device, unit_mesh, normalization, digest)
        print(layer_path_description(task.model, device))
        return task

    metrics = train_in_folder(run_dir, config, make_task, resume is not None, callbacks, progress)
    if (run_dir / "mesh.ply").is_file():
        print(f"mesh: {run_dir / 'mesh.ply'}")
    return run_dir, metrics
