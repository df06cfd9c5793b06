"""Reader (and writer, for tests) of nerfstudio's `transforms.json`, what `ns-process-data` writes
from a phone video or a folder of photos.

The file holds camera intrinsics at the top level -- `fl_x`, `fl_y` (focal lengths in pixels), `cx`,
`cy` (principal point, the top-left pixel's centre at (0.5, 0.5)), `w`, `h`, a `camera_model`
(OPENCV by default) and its distortion (`k1`..`k4`, `p1`, `p2`) -- and a list of `frames`, each
with a `file_path` (relative to the file's folder) and a `transform_matrix`: camera-to-world, 4x4,
OpenGL convention (as Blender's). A frame may repeat any intrinsic key to override it (per-frame
intrinsics). Fisheye and equirectangular models are refused. nerfstudio records no depth bounds, so
such captures train as circling scenes unless told otherwise (forward-facing NDC needs bounds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from neuralfields.data.captures import Capture
from neuralfields.errors import NeuralFieldsError
from neuralfields.media import save_png

TRANSFORMS = "transforms.json"
PERSPECTIVE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "PERSPECTIVE")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def is_nerfstudio_scene(scene_dir: str | Path) -> bool:
    return (Path(scene_dir) / TRANSFORMS).is_file()


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NeuralFieldsError(f"{where} must be a number, got {value!r}")
    return float(value)


def read_nerfstudio_capture(scene_dir: str | Path) -> Capture:
    """The photos and cameras of a folder holding nerfstudio's transforms.json, sorted by file name."""
    scene_dir = Path(scene_dir)
    path = scene_dir / TRANSFORMS
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise NeuralFieldsError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise NeuralFieldsError(f"malformed JSON in {path}: {exc.msg} at line {exc.lineno}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NeuralFieldsError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise NeuralFieldsError(f"malformed {path}: expected an object with a non-empty 'frames' list")

    entries = []
    for index, frame in enumerate(meta["frames"]):
        where = f"{path}: frame {index}"
        if not isinstance(frame, dict):
            raise NeuralFieldsError(f"{where} is not a JSON object")
        settings = {**meta, **frame}  # per-frame intrinsics override the shared ones
        model = settings.get("camera_model", "OPENCV")
        if model not in PERSPECTIVE_MODELS:
            raise NeuralFieldsError(f"{where}: unknown camera model {model!r}; supported: "
                                    f"{', '.join(PERSPECTIVE_MODELS)} (perspective cameras)")
        if not isinstance(frame.get("file_path"), str):
            raise NeuralFieldsError(f"{where} has no 'file_path' string")
        file = scene_dir / frame["file_path"]
        if not file.is_file():
            raise NeuralFieldsError(f"{where} points to {frame['file_path']}, which is not a file in {scene_dir}")
        try:
            matrix = np.asarray(frame.get("transform_matrix"), dtype=np.float64)
        except (TypeError, ValueError):
            matrix = np.zeros(0)
        if matrix.shape not in ((4, 4), (3, 4)) or not np.isfinite(matrix).all():
            raise NeuralFieldsError(f"{where}: 'transform_matrix' must be a finite 4x4 (or 3x4) matrix")
        for key in ("fl_x", "cx", "cy", "w", "h"):
            if key not in settings:
                raise NeuralFieldsError(f"{where}: no '{key}' (neither in the frame nor at the top level)")
        fx = _number(settings["fl_x"], f"{where}: 'fl_x'")
        fy = _number(settings.get("fl_y", settings["fl_x"]), f"{where}: 'fl_y'")
        intrinsics = [fx, fy, _number(settings["cx"], f"{where}: 'cx'"), _number(settings["cy"], f"{where}: 'cy'")]
        size = [_number(settings["w"], f"{where}: 'w'"), _number(settings["h"], f"{where}: 'h'")]
        distortion = [_number(settings.get(key, 0.0), f"{where}: '{key}'") for key in DISTORTION_KEYS]
        pose = np.eye(4)
        pose[:3] = matrix[:3]
        entries.append((file, pose, intrinsics, size, distortion))
    entries.sort(key=lambda entry: entry[0].name)
    files, poses, intrinsics, sizes, distortion = zip(*entries)
    return Capture(f"nerfstudio {TRANSFORMS}", list(files), np.stack(poses), np.array(intrinsics),
                   np.array(sizes), np.array(distortion), bounds=None)


def save_nerfstudio_scene(scene_dir: str | Path, camtoworlds: np.ndarray, images: np.ndarray, focal: float,
                          per_frame_intrinsics: bool = False) -> Path:
    """Write posed images (camtoworlds (N,4,4) OpenGL, images (N,H,W,3) in [0,1], a centred pinhole
    of `focal` pixels) as a nerfstudio capture: images/frame_00001.png ... and transforms.json.
    per_frame_intrinsics puts the intrinsics in every frame instead of the top level."""
    scene_dir = Path(scene_dir)
    (scene_dir / "images").mkdir(parents=True, exist_ok=True)
    height, width = images.shape[1:3]
    intrinsics = {"fl_x": focal, "fl_y": focal, "cx": width / 2, "cy": height / 2, "w": width, "h": height,
                  "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    frames = []
    for index, (pose, image) in enumerate(zip(camtoworlds, images)):
        name = f"images/frame_{index + 1:05d}.png"
        save_png(scene_dir / name, image)
        frame = {"file_path": name, "transform_matrix": np.asarray(pose, dtype=np.float64).tolist()}
        frames.append({**frame, **intrinsics} if per_frame_intrinsics else frame)
    meta = {"camera_model": "OPENCV", **({} if per_frame_intrinsics else intrinsics), "frames": frames}
    (scene_dir / TRANSFORMS).write_text(json.dumps(meta, indent=2))
    return scene_dir
