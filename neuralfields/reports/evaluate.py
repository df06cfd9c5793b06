"""Scoring a run's model through the task's own evaluation code: NeRF through
NerfTask.evaluate_views on the run's scored views, occupancy through evaluate_field. Serves the
quantised re-evaluation (the test split, beside metrics.json's float32 score) and the learning-rate
probe (NeRF: the val split, so that no choice is made on the test views)."""

from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

from neuralfields.data.scenes import load_views, resolve_scene_dir
from neuralfields.device import resolve_device
from neuralfields.reports.quantize import quantized_parameters
from neuralfields.runs import Run
from neuralfields.training.nerf import NerfTask, evenly_spaced
from neuralfields.training.occupancy import evaluate_field, prepare_mesh

QUALITY = {"nerf": "test_psnr", "occupancy": "iou_grid"}
"""The metric each task's runs are ranked, plotted and re-evaluated by (higher is better)."""
QUALITY_COLUMNS = {"nerf": ("test_psnr", "test_ssim"),
                   "occupancy": ("iou_uniform", "iou_grid", "chamfer_l1", "normal_consistency")}
"""The quality metrics of metrics.json that the results table carries."""
QUALITY_LABELS = {"test_psnr": "test PSNR", "iou_grid": "grid IoU", "val_psnr": "val PSNR"}
TOLERANCE = {"nerf": 0.5, "occupancy": 0.01}
"""How much quality a cheaper precision may lose and still count as keeping it (dB, IoU)."""
PROBE_METRIC = {"nerf": "val_psnr", "occupancy": "iou_grid"}


def format_quality(task: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} dB" if task == "nerf" else f"{value:.3f}"


def quality_axis(task: str) -> str:
    """The quality metric's name with its unit, for axes and table headers."""
    return QUALITY_LABELS[QUALITY[task]] + (" (dB)" if task == "nerf" else "")


def format_difference(task: str, value: float) -> str:
    return f"{value:+.2f} dB" if task == "nerf" else f"{value:+.3f}"


def run_scorer(run: Run, split: str = "test") -> tuple[nn.Module, Callable[[], float]]:
    """(the run's trained model, a function that scores the model as it is at call time).

    NeRF: PSNR over the split's views that the run scores (`test_views`, spread evenly), rendered by
    a NerfTask holding the model. Occupancy: grid IoU from evaluate_field (there is no split)."""
    device = resolve_device(run.config.device)
    model = run.load_model(device)
    config = run.config
    if run.task == "nerf":
        scene_dir = resolve_scene_dir(config.scene, config.data_dir)
        views = load_views(scene_dir, split, config.downscale, config.background)
        picked = evenly_spaced(len(views), config.test_views)
        views = dataclasses.replace(views, images=views.images[picked], alphas=views.alphas[picked],
                                    camtoworlds=views.camtoworlds[picked], names=[views.names[i] for i in picked])
        task = NerfTask(config, device, views, scene_dir=scene_dir)
        task.model.load_state_dict(model.state_dict())
        return task.model, lambda: task.evaluate_views(views, progress=False)["psnr"]
    unit_mesh = prepare_mesh(config)[0]
    return model, lambda: evaluate_field(model, unit_mesh, config, progress=False)[0]["iou_grid"]


def quantized_results(run: Run) -> dict:
    """The run's quality metric after its parameters went through fp16 and int8, and their bytes:
    {"checkpoint", "metric", "fp16": {"bytes", "value"}, "int8": {...}}."""
    model, score = run_scorer(run)
    trained = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    result = {"checkpoint": run.checkpoints()[-1].name, "metric": QUALITY[run.task]}
    for precision in ("fp16", "int8"):
        values, size = quantized_parameters(model, precision)
        model.load_state_dict(values, strict=False)
        result[precision] = {"bytes": size, "value": score()}
        model.load_state_dict(trained, strict=False)
    return result


def probe_score(run: Run) -> float:
    """What the learning-rate probe ranks a run by (PROBE_METRIC): NeRF PSNR on the val split;
    occupancy the run's grid IoU (fitting the shape is the task; there is no held-out split)."""
    if run.task == "nerf":
        return run_scorer(run, "val")[1]()
    return run.metrics()["iou_grid"]
