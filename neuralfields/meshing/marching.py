"""Marching cubes over any field: one function serves occupancy networks and NeRF.

`extract_mesh` evaluates `field_fn` on a regular grid of `resolution`^3 points spanning
`bounds` (grid points include both faces of the box), in chunks with a progress bar, and
runs scikit-image's marching cubes at `level`. The field is "inside" where it is *above*
`level` (occupancy logits: level 0; NeRF density: see `NERF_DENSITY_LEVEL`), so faces are
wound with normals pointing out of the object. Optional `color_fn` gives vertex colours.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import trimesh
from skimage import measure

from neuralfields.errors import NeuralFieldsError
from neuralfields.progress import progress_bar

FieldFn = Callable[[torch.Tensor], torch.Tensor]

OCCUPANCY_LOGIT_LEVEL = 0.0  # logit 0 == probability 0.5
NERF_DENSITY_LEVEL = 10.0
"""NeRF density sigma (per unit length) taken as the surface: over a 5e-3 render step it gives
alpha = 1 - exp(-0.05), i.e. clearly non-empty space. export_mesh.py --level changes it."""


def grid_points(bounds: np.ndarray, resolution: int) -> np.ndarray:
    """(R, R, R, 3) float32 grid points spanning `bounds` = [[xmin, ymin, zmin], [xmax, ...]]."""
    bounds = np.asarray(bounds, dtype=np.float64)
    axes = [np.linspace(bounds[0, i], bounds[1, i], resolution) for i in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)


@torch.no_grad()
def evaluate_points(
    field_fn: FieldFn,
    points: np.ndarray,
    chunk_size: int = 65536,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "evaluating field",
) -> np.ndarray:
    """`field_fn` on (N, 3) points, `chunk_size` at a time without autograd: a float32 array of
    N rows (shape (N,) for a scalar field, (N, C) for C channels). Every chunked field query
    (grids, vertex colours, IoU points) goes through here."""
    values = []
    chunks = range(0, len(points), chunk_size)
    for start in progress_bar(chunks, desc=desc, unit="chunk", leave=False, disable=not progress):
        chunk = torch.from_numpy(np.ascontiguousarray(points[start : start + chunk_size], dtype=np.float32))
        values.append(field_fn(chunk.to(device)).float().cpu().numpy())
    return np.concatenate(values) if values else np.empty((0,), np.float32)


def evaluate_grid(
    field_fn: FieldFn,
    bounds: np.ndarray,
    resolution: int,
    chunk_size: int = 65536,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """`field_fn` on the `resolution`^3 grid of `bounds`, as a float32 (R, R, R) volume."""
    if resolution < 2:
        raise NeuralFieldsError(f"grid resolution must be at least 2, got {resolution}")
    points = grid_points(bounds, resolution).reshape(-1, 3)
    values = evaluate_points(field_fn, points, chunk_size, device, progress, desc=f"field on {resolution}^3 grid")
    return values.reshape(resolution, resolution, resolution)


def mesh_from_volume(volume: np.ndarray, bounds: np.ndarray, level: float) -> trimesh.Trimesh:
    """Marching cubes of a grid volume (inside where volume > level), in world coordinates."""
    if not np.all(np.isfinite(volume)):
        raise NeuralFieldsError("field returned non-finite values; cannot extract a mesh")
    if not (volume.min() < level < volume.max()):
        raise NeuralFieldsError(
            f"field never crosses level {level:g} (range {volume.min():.3g} to {volume.max():.3g}); "
            "no surface to extract"
        )
    bounds = np.asarray(bounds, dtype=np.float64)
    spacing = (bounds[1] - bounds[0]) / (np.array(volume.shape) - 1)
    # With our (x, y, z)-indexed volumes, "ascent" winds faces so that normals point towards lower
    # values, i.e. out of the object (tests check the volume of a sphere comes out positive).
    vertices, faces, _, _ = measure.marching_cubes(
        volume, level=level, spacing=tuple(spacing), gradient_direction="ascent"
    )
    return trimesh.Trimesh(vertices + bounds[0], faces, process=True)


def extract_mesh(
    field_fn: FieldFn,
    bounds: np.ndarray,
    resolution: int = 128,
    level: float = OCCUPANCY_LOGIT_LEVEL,
    color_fn: FieldFn | None = None,
    chunk_size: int = 65536,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> trimesh.Trimesh:
    """Mesh of the level set {x : field_fn(x) = level} inside `bounds`, in world coordinates.

    color_fn maps (N, 3) points to (N, 3) RGB in [0, 1]; it colours the vertices.
    """
    volume = evaluate_grid(field_fn, bounds, resolution, chunk_size, device, progress)
    mesh = mesh_from_volume(volume, bounds, level)
    if color_fn is not None:
        mesh.visual.vertex_colors = vertex_colors(color_fn, mesh.vertices, chunk_size, device)
    return mesh


def vertex_colors(
    color_fn: FieldFn, vertices: np.ndarray, chunk_size: int, device: torch.device | str
) -> np.ndarray:
    """(V, 4) uint8 RGBA colours from a colour field evaluated at the vertices."""
    rgb = evaluate_points(color_fn, np.asarray(vertices, dtype=np.float32), chunk_size, device).reshape(-1, 3)
    rgba = np.concatenate([np.clip(rgb, 0.0, 1.0), np.ones((len(rgb), 1), np.float32)], axis=1)
    return (rgba * 255.0 + 0.5).astype(np.uint8)
