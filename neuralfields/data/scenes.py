"""One entry point for posed-image scenes: find the scene folder for a --scene/--data-dir pair, then
load it in whichever format its files say:

    transforms_train.json      Blender / NeRF-synthetic scene (blender.py)
    transforms.json            nerfstudio capture, what ns-process-data writes (nerfstudio.py)
    poses_bounds.npy           LLFF capture (llff.py)
    sparse/0/cameras.{bin,txt} COLMAP sparse model, also sparse/ or colmap/sparse/0/ (colmap.py)

checked in that order. The three photo-capture formats share one normalisation
(neuralfields.data.captures): the spread of the view directions says forward-facing (NDC rays) or
circling (spherified, world rays); a scene kind other than "auto" overrides the measurement.
"""

from __future__ import annotations

import os
from pathlib import Path

from neuralfields.data import DEFAULT_DATA_ROOT
from neuralfields.data.blender import DATASET_HINT, DATASET_SOURCE, load_blender_split
from neuralfields.data.captures import SCENE_KINDS, Capture, SceneLayout, capture_views, scene_layout
from neuralfields.data.colmap import colmap_model_dir, read_colmap_capture
from neuralfields.data.demo_scene import ensure_demo_scene
from neuralfields.data.llff import LLFF_SPLITS, downscaled_files, read_llff_capture
from neuralfields.data.nerfstudio import is_nerfstudio_scene, read_nerfstudio_capture
from neuralfields.data.views import ViewSet
from neuralfields.errors import NeuralFieldsError

SCENE_FORMATS = ("blender", "nerfstudio", "llff", "colmap")
CAPTURE_READERS = {"nerfstudio": read_nerfstudio_capture, "llff": read_llff_capture, "colmap": read_colmap_capture}


def is_llff_scene(scene_dir: str | Path) -> bool:
    return (Path(scene_dir) / "poses_bounds.npy").is_file()


def scene_format(scene_dir: str | Path) -> str | None:
    """"blender", "nerfstudio", "llff" or "colmap" from the files in the folder, or None."""
    scene_dir = Path(scene_dir)
    if (scene_dir / "transforms_train.json").is_file():
        return "blender"
    if is_nerfstudio_scene(scene_dir):
        return "nerfstudio"
    if is_llff_scene(scene_dir):
        return "llff"
    if colmap_model_dir(scene_dir) is not None:
        return "colmap"
    return None


def is_capture_scene(scene_dir: str | Path) -> bool:
    """Whether the folder holds a photo capture (nerfstudio, LLFF or COLMAP), not a Blender scene."""
    return scene_format(scene_dir) in CAPTURE_READERS


def read_capture(scene_dir: str | Path) -> Capture:
    """The photos and cameras of a capture folder (no images read yet)."""
    fmt = scene_format(scene_dir)
    if fmt not in CAPTURE_READERS:
        raise NeuralFieldsError(f"{scene_dir} holds no photo capture (transforms.json, poses_bounds.npy or a "
                                f"COLMAP sparse model)")
    return CAPTURE_READERS[fmt](scene_dir)


def capture_layout(scene_dir: str | Path, scene_kind: str = "auto") -> SceneLayout:
    """How a capture folder is normalised -- kind, spread of view directions, cameras -- from its
    poses alone (cheap: no image is read). Use `.describe()` for the one-line account."""
    return scene_layout(read_capture(scene_dir), scene_kind)


def _in_data_dir(scene: str, data_dir: Path) -> Path:
    """<data_dir>/<scene>, or data_dir itself when that is missing and data_dir is the scene folder:
    named like the scene, or holding a scene in any known format (whatever the name)."""
    nested = data_dir / scene
    if nested.is_dir():
        return nested
    if data_dir.name == scene and (data_dir.is_dir() or scene == "demo"):  # the demo may be generated yet
        return data_dir
    if scene_format(data_dir) is not None:
        return data_dir
    if scene == "demo":
        return nested
    raise NeuralFieldsError(
        f"scene folder not found: {nested}; --data-dir {data_dir} is neither the folder holding the scene "
        f"folders (DIR/{scene}) nor the scene folder itself (named {scene!r} or holding transforms_train.json, "
        f"transforms.json, poses_bounds.npy or a COLMAP sparse model); scenes come from {DATASET_SOURCE} "
        f"or your own photos"
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


def load_views(scene_dir: str | Path, split: str, downscale: int = 1, background: str = "white",
               scene_kind: str = "auto") -> ViewSet:
    """One split of a scene. Photo captures have no alpha, so `background` only applies to Blender
    scenes; a capture's test and val splits are both its held-out views (every 8th photo), and
    `scene_kind` ("auto", "forward", "circling") says how it is normalised (ignored for Blender
    scenes, which are objects in a known box)."""
    if scene_kind not in SCENE_KINDS:
        raise NeuralFieldsError(f"scene kind must be one of {', '.join(SCENE_KINDS)}, got {scene_kind!r}")
    fmt = scene_format(scene_dir)
    if fmt in CAPTURE_READERS:
        if split not in LLFF_SPLITS:
            raise NeuralFieldsError(f"split must be one of {', '.join(LLFF_SPLITS)}, got {split!r}")
        if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
            raise NeuralFieldsError(f"downscale factor must be a positive integer, got {downscale!r}")
        capture = CAPTURE_READERS[fmt](scene_dir)
        if fmt == "llff":
            capture.downscaled = downscaled_files(Path(scene_dir), downscale, len(capture))
        return capture_views(capture, split, downscale, scene_kind)
    return load_blender_split(scene_dir, split, downscale, background)
