"""Shape metrics: volumetric IoU (two protocols), Chamfer-L1 and normal consistency.

Protocols (all in the normalised unit-cube coordinates of `mesh_io`):
- uniform IoU (Occupancy Networks): 100k points uniform in the padded cube
  [-0.55, 0.55]^3, predicted vs true inside labels.
- grid IoU: the same on a dense `resolution`^3 grid spanning the padded cube
  (128^3 by default; the grid that marching cubes also uses).
- Chamfer-L1: 100k points sampled on each surface; mean Euclidean distance to the
  nearest point of the other surface, averaged over both directions (ONet's definition).
- normal consistency: mean |cos| between a sample's face normal and the normal of its
  nearest neighbour on the other surface, averaged over both directions.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from neuralfields.meshing.labels import MeshOccupancy, uniform_points

NUM_UNIFORM_POINTS = 100_000
NUM_SURFACE_SAMPLES = 100_000


def iou(predicted: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    predicted, target = np.asarray(predicted, bool), np.asarray(target, bool)
    union = np.count_nonzero(predicted | target)
    if union == 0:
        return 1.0
    return np.count_nonzero(predicted & target) / union


def uniform_iou(
    predict_inside: Callable[[np.ndarray], np.ndarray],
    occupancy: MeshOccupancy,
    num_points: int = NUM_UNIFORM_POINTS,
    seed: int = 1234,
) -> float:
    """Occupancy Networks IoU: uniform points in the padded cube, prediction vs mesh labels."""
    points = uniform_points(num_points, np.random.default_rng(seed))
    return iou(predict_inside(points), occupancy(points))


def surface_metrics(
    predicted: trimesh.Trimesh,
    target: trimesh.Trimesh,
    num_samples: int = NUM_SURFACE_SAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """{"chamfer_l1", "normal_consistency"} between two surfaces (see module docstring)."""
    pred_points, pred_normals = _surface_samples(predicted, num_samples, seed)
    true_points, true_normals = _surface_samples(target, num_samples, seed + 1)
    pred_to_true, nearest_true = cKDTree(true_points).query(pred_points, workers=-1)
    true_to_pred, nearest_pred = cKDTree(pred_points).query(true_points, workers=-1)
    cos_pred = np.abs(np.sum(pred_normals * true_normals[nearest_true], axis=1))
    cos_true = np.abs(np.sum(true_normals * pred_normals[nearest_pred], axis=1))
    return {
        "chamfer_l1": float(0.5 * (pred_to_true.mean() + true_to_pred.mean())),
        "normal_consistency": float(0.5 * (cos_pred.mean() + cos_true.mean())),
    }


def _surface_samples(mesh: trimesh.Trimesh, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points), np.asarray(mesh.face_normals[face_index])
