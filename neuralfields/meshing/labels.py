"""Inside/outside labels for points against a triangle mesh, and cached training samples.

Labels come from open3d's `RaycastingScene.compute_occupancy`, which counts ray
crossings (fast on CPU: about 1M points in 0.3 s on 2 cores). For a watertight mesh
three rays per point are cast and the majority wins (guards against rays grazing an edge
or vertex). A mesh that is not watertight has no well-defined inside; we warn and use a
majority vote over `ROBUST_RAYS` random ray directions, which tolerates small holes.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
import trimesh

from neuralfields.meshing.mesh_io import CUBE_HALF

WATERTIGHT_RAYS = 3
ROBUST_RAYS = 11


class MeshOccupancy:
    """Answers "is this point inside the mesh?" for batches of points."""

    def __init__(self, mesh: trimesh.Trimesh):
        self.watertight = bool(mesh.is_watertight)
        if not self.watertight:
            warnings.warn(
                f"mesh is not watertight; inside/outside uses a {ROBUST_RAYS}-ray majority vote",
                stacklevel=2,
            )
        self.rays = WATERTIGHT_RAYS if self.watertight else ROBUST_RAYS
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
        )

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Boolean (N,) inside mask for (N, 3) points."""
        query = o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
        return self._scene.compute_occupancy(query, nsamples=self.rays).numpy().astype(bool)


@dataclass(frozen=True)
class SampleSpec:
    """How training points are drawn: uniform in the padded cube plus near-surface points."""

    num_uniform: int = 500_000
    num_surface: int = 1_000_000
    noise_scales: tuple[float, ...] = (0.01, 0.003)  # in unit-cube lengths
    seed: int = 0

    def key(self) -> str:
        scales = "-".join(f"{s:g}" for s in self.noise_scales)
        return f"u{self.num_uniform}_s{self.num_surface}_n{scales}_seed{self.seed}"


def uniform_points(count: int, rng: np.random.Generator) -> np.ndarray:
    """Points uniform in the padded cube."""
    return rng.uniform(-CUBE_HALF, CUBE_HALF, size=(count, 3)).astype(np.float32)


def sample_training_points(
    mesh: trimesh.Trimesh, spec: SampleSpec, occupancy: MeshOccupancy | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) float32, labels (N,) bool) for a mesh already in the unit cube.

    Near-surface points are surface samples displaced by isotropic Gaussian noise, split
    evenly over `spec.noise_scales`; they put the training signal where the boundary is.
    """
    rng = np.random.default_rng(spec.seed)
    occupancy = occupancy or MeshOccupancy(mesh)
    surface, _ = trimesh.sample.sample_surface(mesh, spec.num_surface, seed=spec.seed)
    scales = np.resize(np.asarray(spec.noise_scales, dtype=np.float64), spec.num_surface)
    near = surface + rng.normal(size=surface.shape) * scales[:, None]
    points = np.concatenate([uniform_points(spec.num_uniform, rng), near.astype(np.float32)])
    points = np.clip(points, -CUBE_HALF, CUBE_HALF).astype(np.float32)
    return points, occupancy(points)


def cached_training_points(
    mesh: trimesh.Trimesh, mesh_digest: str, spec: SampleSpec, cache_dir: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """`sample_training_points`, stored as an .npz keyed by the mesh file hash and `spec`."""
    cache_file = Path(cache_dir) / f"{mesh_digest[:16]}_{spec.key()}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as data:
            return data["points"], data["labels"]
    points, labels = sample_training_points(mesh, spec)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_suffix(".tmp.npz")
    np.savez(temporary, points=points, labels=labels, spec=str(asdict(spec)))
    temporary.replace(cache_file)
    return points, labels
