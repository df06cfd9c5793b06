"""Loader for scenes in the Blender / NeRF-synthetic format (transforms_{split}.json + RGBA PNGs).

A scene folder holds transforms_train.json, transforms_val.json, transforms_test.json. Each has
"camera_angle_x" (horizontal field of view, radians) and "frames", a list of {"file_path",
"transform_matrix"}; file_path is relative to the scene folder, usually without extension
("./train/r_0" -> train/r_0.png). transform_matrix is camera-to-world, OpenGL convention
(see neuralfields.rendering.cameras). Optional "near"/"far" keys override the Blender defaults 2/6.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from neuralfields.progress import progress_bar

from neuralfields.data.images import area_downscale, composite, read_image
from neuralfields.data.views import ViewSet
from neuralfields.errors import NeuralFieldsError

DEFAULT_NEAR = 2.0
DEFAULT_FAR = 6.0
SPLITS = ("train", "val", "test")
DATASET_SOURCE = ("the public NeRF synthetic (Blender) dataset, nerf_synthetic.zip of Mildenhall et al. "
                  "(ECCV 2020, https://www.matthewtancik.com/nerf)")
DATASET_HINT = f"{DATASET_SOURCE}, unzipped so that <data>/nerf_synthetic/<scene>/transforms_train.json exists"


def _read_transforms(path: Path) -> dict:
    if not path.is_file():
        raise NeuralFieldsError(f"transforms file not found: {path}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NeuralFieldsError(f"malformed JSON in {path}: {exc.msg} at line {exc.lineno}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NeuralFieldsError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict):
        raise NeuralFieldsError(f"malformed {path}: expected a JSON object at the top level")
    for key in ("camera_angle_x", "frames"):
        if key not in meta:
            raise NeuralFieldsError(f"malformed {path}: missing key '{key}'")
    angle = meta["camera_angle_x"]
    if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not 0 < angle < math.pi:
        raise NeuralFieldsError(f"malformed {path}: 'camera_angle_x' must be an angle in (0, pi) radians, got {angle!r}")
    if not isinstance(meta["frames"], list) or not meta["frames"]:
        raise NeuralFieldsError(f"malformed {path}: 'frames' must be a non-empty list")
    for key in ("near", "far"):
        if key in meta and (isinstance(meta[key], bool) or not isinstance(meta[key], (int, float))):
            raise NeuralFieldsError(f"malformed {path}: '{key}' must be a number, got {meta[key]!r}")
    return meta


def _frame_pose(frame: object, index: int, path: Path) -> tuple[str, np.ndarray]:
    """Validate one frame entry: (file_path, 4x4 camera-to-world)."""
    where = f"malformed {path}: frame {index}"
    if not isinstance(frame, dict):
        raise NeuralFieldsError(f"{where} is not a JSON object")
    for key in ("file_path", "transform_matrix"):
        if key not in frame:
            raise NeuralFieldsError(f"{where} is missing key '{key}'")
    if not isinstance(frame["file_path"], str):
        raise NeuralFieldsError(f"{where}: 'file_path' must be a string")
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.shape not in ((4, 4), (3, 4)):
        shape = "not a numeric matrix" if matrix is None else f"shape {matrix.shape}"
        raise NeuralFieldsError(f"{where}: 'transform_matrix' must be 4x4 (or 3x4), got {shape}")
    if not np.isfinite(matrix).all():
        raise NeuralFieldsError(f"{where}: 'transform_matrix' contains non-finite numbers")
    pose = np.eye(4)
    pose[:3] = matrix[:3]
    return frame["file_path"], pose


def _image_path(scene_dir: Path, file_path: str) -> Path:
    path = scene_dir / file_path
    return path if path.suffix else path.with_suffix(".png")


def load_blender_split(scene_dir: str | Path, split: str, downscale: int = 1,
                       background: str = "white") -> ViewSet:
    """Load one split of a Blender-format scene, composited on a white or black background.

    downscale N averages N x N pixel blocks (must divide the image size) and divides the focal by N.
    focal = 0.5 * W / tan(0.5 * camera_angle_x) with W the full-resolution width.
    """
    if split not in SPLITS:
        raise NeuralFieldsError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise NeuralFieldsError(f"downscale must be a positive integer, got {downscale!r}")
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise NeuralFieldsError(f"scene folder not found: {scene_dir}; it should come from {DATASET_HINT}")
    transforms_path = scene_dir / f"transforms_{split}.json"
    meta = _read_transforms(transforms_path)
    entries = [_frame_pose(frame, i, transforms_path) for i, frame in enumerate(meta["frames"])]

    images, alphas, full_size = [], [], None
    for file_path, _ in progress_bar(entries, desc=f"loading {scene_dir.name}/{split}", unit="img",
                             disable=len(entries) < 20, leave=False):
        path = _image_path(scene_dir, file_path)
        pixels = read_image(path)
        if full_size is None:
            full_size = pixels.shape[:2]
        elif pixels.shape[:2] != full_size:
            raise NeuralFieldsError(
                f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} but earlier images of "
                f"{transforms_path.name} are {full_size[1]}x{full_size[0]}"
            )
        rgb, alpha = composite(pixels, background)
        images.append(area_downscale(rgb, downscale, str(path)))
        alphas.append(area_downscale(alpha, downscale, str(path)))

    full_height, full_width = full_size
    focal = 0.5 * full_width / math.tan(0.5 * float(meta["camera_angle_x"]))
    return ViewSet(
        images=torch.from_numpy(np.stack(images)).float(),
        alphas=torch.from_numpy(np.stack(alphas)).float(),
        camtoworlds=torch.from_numpy(np.stack([pose for _, pose in entries])).float(),
        focal=focal / downscale,
        height=full_height // downscale,
        width=full_width // downscale,
        near=float(meta.get("near", DEFAULT_NEAR)),
        far=float(meta.get("far", DEFAULT_FAR)),
        names=[file_path for file_path, _ in entries],
    )
