"""One entry point for posed-image scenes: find the scene folder for a --scene/--data-dir pair, then
load Blender (transforms_<split>.json) or forward-facing LLFF (poses_bounds.npy), told apart by the
files in the scene folder."""

from __future__ import annotations

import os
from pathlib import Path

from neuralfields.data import DEFAULT_DATA_ROOT
from neuralfields.data.blender import DATASET_HINT, DATASET_SOURCE, load_blender_split
from neuralfields.data.demo_scene import ensure_demo_scene
from neuralfields.data.llff import load_llff_scene
from neuralfields.data.views import ViewSet
from neuralfields.errors import NeuralFieldsError


def is_llff_scene(scene_dir: str | Path) -> bool:
    return (Path(scene_dir) / "poses_bounds.npy").is_file()


def _in_data_dir(scene: str, data_dir: Path) -> Path:
    """<data_dir>/<scene>, or data_dir itself when that is missing and data_dir is the scene folder:
    named like the scene, or holding transforms_train.json or poses_bounds.npy (whatever the name)."""
    nested = data_dir / scene
    if nested.is_dir():
        return nested
    if data_dir.name == scene and (data_dir.is_dir() or scene == "demo"):  # the demo may be generated yet
        return data_dir
    if (data_dir / "transforms_train.json").is_file() or is_llff_scene(data_dir):
        return data_dir
    if scene == "demo":
        return nested
    raise NeuralFieldsError(
        f"scene folder not found: {nested}; --data-dir {data_dir} is neither the folder holding the scene "
        f"folders (DIR/{scene}) nor the scene folder itself (named {scene!r} or holding transforms_train.json "
        f"or poses_bounds.npy); scenes come from {DATASET_SOURCE}"
    )


def resolve_scene_dir(scene: str, data_dir: str | Path | None = None) -> Path:
    """Turn --scene (and --data-dir) into a scene folder; the demo scene is generated on first use.

    A value containing "/" is the scene folder itself. Otherwise, without data_dir: "demo" ->
    <repo>/data/demo, a name -> <repo>/data/nerf_synthetic/<name>; with data_dir: <data_dir>/<scene>
    or data_dir itself (see _in_data_dir), so both forms users pass work. Raises NeuralFieldsError
    naming the paths tried when no folder is found.
    """
    if "/" in scene or os.sep in scene:
        scene_dir = Path(scene)
    elif data_dir is None:
        scene_dir = DEFAULT_DATA_ROOT / ("demo" if scene == "demo" else Path("nerf_synthetic", scene))
    else:
        scene_dir = _in_data_dir(scene, Path(data_dir))
    if scene == "demo":
        return ensure_demo_scene(scene_dir)
    if not scene_dir.is_dir():
        raise NeuralFieldsError(f"scene folder not found: {scene_dir}; it should come from {DATASET_HINT}")
    return scene_dir


def load_views(scene_dir: str | Path, split: str, downscale: int = 1, background: str = "white") -> ViewSet:
    """One split of a scene. LLFF photos have no alpha, so `background` only applies to Blender
    scenes; LLFF's test and val splits are both its held-out views (every 8th image)."""
    if is_llff_scene(scene_dir):
        return load_llff_scene(scene_dir, split, factor=downscale)
    return load_blender_split(scene_dir, split, downscale, background)
