"""The viewer of run folders: one run, or several of one scene (or mesh) side by side.

    viewer = open_viewer(["outputs/lego/sine-k1/<ts>"], host="127.0.0.1", port=8080)
    print(viewer.url); ...; viewer.close()
"""

from __future__ import annotations

import json
from pathlib import Path

from neuralfields.errors import NeuralFieldsError
from neuralfields.viewer.app import (
    DEFAULT_LONG_SIDE, GPU_LONG_SIDE, GPU_PREVIEW_LONG_SIDE, NerfScene, NerfViewer, OccupancyViewer,
)
from neuralfields.viewer.models import NerfModel, OccupancyModel, RunSlot
from neuralfields.viewer.progressive import PREVIEW_LONG_SIDE


def _letters(count: int) -> list[str]:
    return [chr(ord("A") + index) for index in range(count)]


def nerf_render_settings(config, scene: NerfScene):
    """The RenderSettings evaluation uses for this run. NerfTask builds them from the *training*
    split, which for Blender scenes may name its own near/far in transforms_train.json: those are
    read from there (cheaply); everything else comes from the test split, as captures share one
    normalisation across splits."""
    from dataclasses import replace

    from neuralfields.data.blender import DEFAULT_FAR, DEFAULT_NEAR
    from neuralfields.training.nerf import render_settings

    settings = render_settings(config, scene.views)
    path = scene.scene_dir / "transforms_train.json"
    if not scene.ndc and path.is_file():
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise NeuralFieldsError(f"cannot read {path}: {exc}") from None
        settings = replace(settings, near=float(meta.get("near", DEFAULT_NEAR)),
                           far=float(meta.get("far", DEFAULT_FAR)))
    return settings


def _same_scene(runs, scene_dirs: list[Path]) -> None:
    first = scene_dirs[0].resolve()
    for letter, run, scene_dir in zip(_letters(len(runs)), runs, scene_dirs):
        if scene_dir.resolve() != first:
            raise NeuralFieldsError(
                f"compare mode needs runs of one scene: {runs[0].path} was trained on {scene_dirs[0]}, "
                f"{run.path} on {scene_dir}")


def open_viewer(paths: list[str | Path], host: str = "127.0.0.1", port: int = 8080, device: str = "cpu",
                long_side: int | None = None, preview_long_side: int | None = None,
                mesh_resolution: int = 64, poll_s: float = 5.0, quiet: bool = False):
    """A running viewer of the runs in `paths` (NeRF or occupancy; several runs: compare mode).
    Runs still training (or with no checkpoint yet) are watched for new checkpoints. Frame sizes
    (long side of still frames / of frames while moving) default to 128 / 32 px on a CPU (a
    reference-size NeRF renders ~1,000 rays/s on 2 cores) and 512 / 128 px on a GPU."""
    from neuralfields.data.scenes import resolve_scene_dir
    from neuralfields.device import resolve_device
    from neuralfields.runs import open_run
    from neuralfields.viewer.server import start_server, url

    if not paths:
        raise NeuralFieldsError("name at least one run folder")
    runs = [open_run(path) for path in paths]
    tasks = sorted({run.task for run in runs})
    if len(tasks) > 1:
        raise NeuralFieldsError(f"compare mode needs runs of one task, got {' and '.join(tasks)} runs")
    device = resolve_device(device)
    on_gpu = device.type == "cuda"
    long_side = long_side or (GPU_LONG_SIDE if on_gpu else DEFAULT_LONG_SIDE)
    preview_long_side = preview_long_side or (GPU_PREVIEW_LONG_SIDE if on_gpu else PREVIEW_LONG_SIDE)
    task = tasks[0]
    if task == "nerf":
        scene_dirs = [resolve_scene_dir(run.config.scene, run.config.data_dir) for run in runs]
        _same_scene(runs, scene_dirs)
        scene = NerfScene.from_config(runs[0].config)
        settings = [nerf_render_settings(run.config, scene) for run in runs]
        slots = [RunSlot(run, device, lambda model, s=s, run=run: NerfModel(model.field, model.path, s,
                                                                             run.config.eval_chunk), poll_s)
                 for run, s in zip(runs, settings)]
    elif task == "occupancy":
        meshes = {run.config.mesh_name for run in runs}
        if len(meshes) > 1:
            raise NeuralFieldsError(f"compare mode needs runs of one mesh, got {', '.join(sorted(meshes))}")
        slots = [RunSlot(run, device, lambda model: OccupancyModel(model), poll_s) for run in runs]
    else:
        raise NeuralFieldsError(f"the viewer shows NeRF and occupancy runs; {runs[0].path} is a {task} run")

    server = start_server(host, port, label="neuralfields" + (" (compare)" if len(runs) > 1 else ""))
    try:
        if task == "nerf":
            viewer = NerfViewer(server, slots, scene, save_dir=runs[0].path, long_side=long_side,
                                preview_long_side=preview_long_side, host=host)
        else:
            viewer = OccupancyViewer(server, slots, truth=_truth_loader(runs[0]), mesh_resolution=mesh_resolution,
                                     host=host, save_dir=runs[0].path)
    except BaseException:
        server.stop()
        raise
    viewer.url = url(server, host)
    for slot in slots:
        slot.watch()
    if not quiet:
        for letter, run, slot in zip(_letters(len(runs)), runs, slots):
            state = "training" if run.is_training() else "finished" if run.metrics() else "not finished"
            what = f"step {slot.info['step']:,}" if slot.info.get("step") is not None else "no checkpoint yet"
            prefix = f"{letter}: " if len(runs) > 1 else ""
            print(f"{prefix}{run.path} ({run.task}, {run.config.spec}, {what}, {state})")
        print(f"viewer: {viewer.url}", flush=True)
    return viewer


def _truth_loader(run):
    """A loader of the run's mesh in the unit cube (None when it cannot be read here)."""

    def load():
        from neuralfields.training.occupancy import prepare_mesh

        try:
            return prepare_mesh(run.config)[0]
        except (NeuralFieldsError, OSError, ValueError):
            return None

    return load
