"""Loader for forward-facing LLFF scenes (poses_bounds.npy + images/) and NDC rays.

poses_bounds.npy holds one row of 17 numbers per image (images sorted by file name): a 3x5 matrix
flattened row-major -- a 3x4 camera-to-world in LLFF's [down, right, back] axis order plus a
column (height, width, focal) of the full-resolution images -- then the near and far depth bounds.
Loading converts the axes to the OpenGL convention [right, up, back], scales the world so the
nearest bound becomes 1 / bound_margin (so near = 1 is a safe NDC near plane), and recentres the
poses on their average pose (as in the original NeRF code). Forward-facing scenes are rendered in
normalised device coordinates (neuralfields.rendering.cameras.ndc_rays, applied by image_rays when
ndc=True); in NDC t runs from 0 (near plane) to 1 (infinity), which is what the returned ViewSet's
near/far say (with ndc=True).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from neuralfields.progress import progress_bar

from neuralfields.data.images import area_downscale, read_image
from neuralfields.data.views import ViewSet
from neuralfields.errors import NeuralFieldsError
from neuralfields.media import save_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LLFF_SPLITS = ("train", "val", "test", "all")


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def average_pose(poses: np.ndarray) -> np.ndarray:
    """The mean camera (4,4) of camera-to-worlds (N,3|4,4): mean centre, mean back axis, mean up axis."""
    centre = poses[:, :3, 3].mean(axis=0)
    back = _normalise(poses[:, :3, 2].sum(axis=0))
    right = _normalise(np.cross(poses[:, :3, 1].sum(axis=0), back))
    up = np.cross(back, right)
    pose = np.eye(4)
    pose[:3, :4] = np.stack([right, up, back, centre], axis=1)
    return pose


def _read_poses_bounds(scene_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(camtoworlds in LLFF axes (N,3,4), hwf (N,3), bounds (N,2)) from poses_bounds.npy."""
    path = scene_dir / "poses_bounds.npy"
    if not path.is_file():
        raise NeuralFieldsError(f"poses_bounds.npy not found in {scene_dir}; an LLFF scene holds "
                                f"poses_bounds.npy and an images/ folder")
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise NeuralFieldsError(f"cannot read {path}: {exc}") from None
    if rows.ndim != 2 or rows.shape[1] != 17 or rows.shape[0] == 0 or not np.issubdtype(rows.dtype, np.number):
        raise NeuralFieldsError(f"{path} has shape {rows.shape}; expected (N, 17): a 3x5 pose and "
                                f"near/far bounds per image")
    if not np.isfinite(rows).all():
        raise NeuralFieldsError(f"{path} contains non-finite numbers")
    matrices = rows[:, :15].reshape(-1, 3, 5).astype(np.float64)
    bounds = rows[:, 15:].astype(np.float64)
    if (bounds <= 0).any():
        raise NeuralFieldsError(f"{path}: near/far bounds must be positive")
    return matrices[:, :, :4], matrices[:, :, 4], bounds


def _image_files(scene_dir: Path, factor: int) -> tuple[list[Path], int]:
    """Sorted image paths and the downscale still to apply (1 when an images_<factor> folder exists)."""
    folder, remaining = scene_dir / f"images_{factor}", 1
    if factor == 1 or not folder.is_dir():
        folder, remaining = scene_dir / "images", factor
    if not folder.is_dir():
        raise NeuralFieldsError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NeuralFieldsError(f"no PNG/JPEG images in {folder}")
    return files, remaining


def load_llff_scene(scene_dir: str | Path, split: str = "train", factor: int = 8,
                    holdout_every: int = 8, bound_margin: float = 0.75) -> ViewSet:
    """Load an LLFF scene downscaled by `factor`; every holdout_every-th image is the test/val split.

    Uses images_<factor>/ when present, else averages factor x factor blocks of images/.
    Returns a ViewSet with alphas 1, ndc=True, near=0, far=1 (NDC ray parameters).
    """
    if split not in LLFF_SPLITS:
        raise NeuralFieldsError(f"split must be one of {', '.join(LLFF_SPLITS)}, got {split!r}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise NeuralFieldsError(f"downscale factor must be a positive integer, got {factor!r}")
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise NeuralFieldsError(f"LLFF scene folder not found: {scene_dir}")
    llff_poses, hwf, bounds = _read_poses_bounds(scene_dir)
    files, remaining = _image_files(scene_dir, factor)
    if len(files) != len(llff_poses):
        raise NeuralFieldsError(f"{scene_dir / 'poses_bounds.npy'} has {len(llff_poses)} poses but "
                                f"{files[0].parent} has {len(files)} images")

    # [down, right, back] -> [right, up, back]
    poses = np.concatenate([llff_poses[:, :, 1:2], -llff_poses[:, :, 0:1], llff_poses[:, :, 2:4]], axis=2)
    scale = 1.0 / (bounds.min() * bound_margin)
    poses[:, :, 3] *= scale
    homogeneous = np.tile(np.eye(4), (len(poses), 1, 1))
    homogeneous[:, :3] = poses
    camtoworlds = np.linalg.inv(average_pose(homogeneous)) @ homogeneous

    indices = np.arange(len(files))
    held_out = indices[::holdout_every]
    chosen = {"all": indices, "test": held_out, "val": held_out,
              "train": np.setdiff1d(indices, held_out)}[split]

    images, size = [], None
    for index in progress_bar(chosen, desc=f"loading {scene_dir.name}/{split}", unit="img",
                      disable=len(chosen) < 20, leave=False):
        pixels = area_downscale(read_image(files[index])[..., :3], remaining, str(files[index]))
        if size is None:
            size = pixels.shape[:2]
        elif pixels.shape[:2] != size:
            raise NeuralFieldsError(f"image {files[index]} is {pixels.shape[1]}x{pixels.shape[0]} but "
                                    f"earlier images are {size[1]}x{size[0]}")
        images.append(pixels)
    height, width = size
    focal = float(hwf[0, 2]) * height / float(hwf[0, 0])  # hwf describes the full-resolution images
    return ViewSet(
        images=torch.from_numpy(np.stack(images)).float(),
        alphas=torch.ones(len(images), height, width),
        camtoworlds=torch.from_numpy(camtoworlds[chosen]).float(),
        focal=focal, height=height, width=width, near=0.0, far=1.0,
        names=[files[i].name for i in chosen], ndc=True,
    )


def save_llff_scene(scene_dir: str | Path, camtoworlds: np.ndarray, bounds: np.ndarray, images: np.ndarray,
                    focal: float, folder: str = "images") -> Path:
    """Write posed images as an LLFF scene (the loader's inverse): camtoworlds (N,4,4) in the OpenGL
    convention, bounds (N,2) near/far depths, images (N,H,W,3) in [0,1], focal in pixels."""
    scene_dir = Path(scene_dir)
    (scene_dir / folder).mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        save_png(scene_dir / folder / f"IMG_{index:03d}.png", image)
    poses = np.asarray(camtoworlds, dtype=np.float64)[:, :3, :4]
    llff = np.concatenate([-poses[:, :, 1:2], poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)  # [down, right, back]
    height, width = images.shape[1:3]
    hwf = np.broadcast_to(np.array([height, width, focal], dtype=np.float64)[None, :, None], (len(poses), 3, 1))
    rows = np.concatenate([np.concatenate([llff, hwf], axis=2).reshape(len(poses), 15), bounds], axis=1)
    np.save(scene_dir / "poses_bounds.npy", rows)
    return scene_dir
