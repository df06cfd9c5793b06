"""Analytic test shapes and the embedded procedural default shape.

The analytic shapes (sphere, axis-aligned box) have exact inside tests, volumes and
areas, so labels, meshing and metrics can be checked against closed forms. The default
shape, used when no mesh is given, is a bumpy sphere (fine 3-D sine relief) joined with a
thin torus ring: thin parts and high-frequency detail that a weak field blurs away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from neuralfields.meshing.marching import grid_points, mesh_from_volume

DEFAULT_SHAPE_NAME = "default-shape"


@dataclass(frozen=True)
class Sphere:
    radius: float
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(points - np.asarray(self.center), axis=-1) < self.radius

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Negative inside."""
        return np.linalg.norm(points - np.asarray(self.center), axis=-1) - self.radius

    @property
    def volume(self) -> float:
        return 4.0 / 3.0 * np.pi * self.radius**3

    @property
    def area(self) -> float:
        return 4.0 * np.pi * self.radius**2

    def mesh(self, subdivisions: int = 4) -> trimesh.Trimesh:
        return trimesh.creation.icosphere(subdivisions, self.radius).apply_translation(self.center)


@dataclass(frozen=True)
class Box:
    half_extents: tuple[float, float, float]
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        offset = np.abs(points - np.asarray(self.center))
        return np.all(offset < np.asarray(self.half_extents), axis=-1)

    @property
    def volume(self) -> float:
        return float(np.prod(2.0 * np.asarray(self.half_extents)))

    def mesh(self) -> trimesh.Trimesh:
        box = trimesh.creation.box(extents=2.0 * np.asarray(self.half_extents))
        return box.apply_translation(self.center)


def default_shape_distance(points: np.ndarray) -> np.ndarray:
    """Implicit function of the default shape (negative inside), points in [-0.5, 0.5]^3."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    relief = 0.02 * np.sin(40.0 * x) * np.sin(40.0 * y) * np.sin(40.0 * z)
    bumpy_sphere = np.sqrt(x**2 + y**2 + z**2) - (0.27 + relief)
    ring = np.sqrt((np.sqrt(x**2 + z**2) - 0.38) ** 2 + (y - 0.05) ** 2) - 0.045
    return np.minimum(bumpy_sphere, ring)


def default_shape(resolution: int = 160) -> trimesh.Trimesh:
    """The embedded default mesh: marching cubes of `default_shape_distance` (watertight)."""
    bounds = np.array([[-0.5] * 3, [0.5] * 3])
    volume = -default_shape_distance(grid_points(bounds, resolution))
    return mesh_from_volume(volume, bounds, level=0.0)
