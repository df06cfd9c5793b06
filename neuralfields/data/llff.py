"""Loader for LLFF scenes (poses_bounds.npy + images/), forward-facing or circling.

poses_bounds.npy holds one row of 17 numbers per image (images sorted by file name): a 3x5 matrix
flattened row-major -- a 3x4 camera-to-world in LLFF's [down, right, back] axis order plus a
column (height, width, focal) of the full-resolution images -- then the near and far depth bounds.
Reading converts the axes to the OpenGL convention [right, up, back]; neuralfields.data.captures
then measures the spread of the view directions and normalises the scene: forward-facing captures
(the original LLFF scenes) are scaled so the nearest bound becomes 1 / 0.75 (so near = 1 is a safe
NDC near plane), recentred on the average pose (as in the original NeRF code) and rendered in
normalised device coordinates (neuralfields.rendering.cameras.ndc_rays, applied by image_rays when
ndc=True; t runs from 0 at the near plane to 1 at infinity, which is what the ViewSet's near/far
say); circling captures (phone captures around an object) are spherified and use world rays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuralfields.data.captures import HOLDOUT_EVERY, Capture, average_pose, capture_views
from neuralfields.data.views import ViewSet
from neuralfields.errors import NeuralFieldsError
from neuralfields.media import save_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LLFF_SPLITS = ("train", "val", "test", "all")
__all__ = ["LLFF_SPLITS", "average_pose", "downscaled_files", "load_llff_scene", "read_llff_capture", "save_llff_scene"]  # average_pose: kept here too


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


def _image_files(scene_dir: Path) -> list[Path]:
    """The photos of images/, sorted by name (the order of the pose rows)."""
    folder = scene_dir / "images"
    if not folder.is_dir():
        raise NeuralFieldsError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NeuralFieldsError(f"no PNG/JPEG images in {folder}")
    return files


def downscaled_files(scene_dir: Path, factor: int, count: int) -> dict[int, list[Path]]:
    """{factor: photos of images_<factor>/} when that folder exists (LLFF's pre-downscaled copies,
    sorted by name like images/, one per pose), else {}."""
    folder = scene_dir / f"images_{factor}"
    if factor == 1 or not folder.is_dir():
        return {}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) != count:
        raise NeuralFieldsError(f"{scene_dir / 'poses_bounds.npy'} has {count} poses but {folder} has "
                                f"{len(files)} images")
    return {factor: files}


def read_llff_capture(scene_dir: str | Path) -> Capture:
    """The photos and cameras of an LLFF scene folder (OpenGL axes, the capture's own world)."""
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise NeuralFieldsError(f"LLFF scene folder not found: {scene_dir}")
    llff_poses, hwf, bounds = _read_poses_bounds(scene_dir)
    files = _image_files(scene_dir)
    if len(files) != len(llff_poses):
        raise NeuralFieldsError(f"{scene_dir / 'poses_bounds.npy'} has {len(llff_poses)} poses but "
                                f"{files[0].parent} has {len(files)} images")
    # [down, right, back] -> [right, up, back]
    poses = np.concatenate([llff_poses[:, :, 1:2], -llff_poses[:, :, 0:1], llff_poses[:, :, 2:4]], axis=2)
    camtoworlds = np.tile(np.eye(4), (len(poses), 1, 1))
    camtoworlds[:, :3] = poses
    height, width, focal = hwf[:, 0], hwf[:, 1], hwf[:, 2]
    intrinsics = np.stack([focal, focal, width / 2, height / 2], axis=1)
    return Capture("LLFF poses_bounds.npy", files, camtoworlds, intrinsics, np.stack([width, height], axis=1),
                   np.zeros((len(files), 6)), bounds)


def load_llff_scene(scene_dir: str | Path, split: str = "train", factor: int = 8,
                    holdout_every: int = HOLDOUT_EVERY, scene_kind: str = "auto") -> ViewSet:
    """Load an LLFF scene downscaled by `factor`; every holdout_every-th image is the test/val split.

    Uses images_<factor>/ when present, else averages factor x factor blocks of images/ (after a
    centred crop to multiples of the factor). Forward-facing scenes (or scene_kind="forward") get
    ndc=True, near=0, far=1 (NDC ray parameters); circling ones world rays (see data/captures.py).
    """
    if split not in LLFF_SPLITS:
        raise NeuralFieldsError(f"split must be one of {', '.join(LLFF_SPLITS)}, got {split!r}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise NeuralFieldsError(f"downscale factor must be a positive integer, got {factor!r}")
    capture = read_llff_capture(scene_dir)
    capture.downscaled = downscaled_files(Path(scene_dir), factor, len(capture))
    return capture_views(capture, split, factor, scene_kind, holdout_every)


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
