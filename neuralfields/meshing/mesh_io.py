"""Load meshes, normalise them into the padded unit cube, and export meshes.

Coordinate convention for every occupancy model: the mesh's bounding box is centred
at the origin and scaled uniformly so that its longest side spans [-0.5, 0.5]. Fields
are trained and evaluated in the *padded cube* [-0.55, 0.55]^3 (padding 0.1 of the
unit length, as in Occupancy Networks). `Normalization` keeps the transform so that
extracted meshes are exported back in the original coordinates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from neuralfields.errors import NeuralFieldsError

PADDING = 0.1
CUBE_HALF = 0.5 * (1.0 + PADDING)  # the padded cube is [-CUBE_HALF, CUBE_HALF]^3
PADDED_BOUNDS = np.array([[-CUBE_HALF] * 3, [CUBE_HALF] * 3])
EXPORT_FORMATS = ("ply", "obj", "glb")


@dataclass(frozen=True)
class Normalization:
    """Uniform similarity transform: normalised = (original - center) * scale."""

    center: tuple[float, float, float]
    scale: float

    @classmethod
    def fit(cls, mesh: trimesh.Trimesh) -> "Normalization":
        """The transform that puts `mesh`'s bounding box into [-0.5, 0.5]^3 (longest side 1)."""
        lo, hi = mesh.bounds
        extent = float(np.max(hi - lo))
        if not np.isfinite(extent) or extent <= 1e-12:
            raise NeuralFieldsError(f"mesh has degenerate bounds (largest extent {extent:g})")
        center = (lo + hi) / 2.0
        return cls(center=tuple(float(c) for c in center), scale=1.0 / extent)

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) * self.scale

    def to_original(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.center)

    def mesh_to_original(self, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
        """A copy of a unit-cube mesh moved back into the original coordinates."""
        moved = mesh.copy()
        moved.vertices = self.to_original(mesh.vertices)
        return moved

    def to_dict(self) -> dict:
        return {"center": list(self.center), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(center=tuple(float(c) for c in data["center"]), scale=float(data["scale"]))


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """Read any mesh trimesh understands (OBJ, PLY, STL, OFF, GLB) as one triangle mesh."""
    path = Path(path)
    if not path.is_file():
        raise NeuralFieldsError(f"mesh file not found: {path}")
    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except Exception as exc:  # trimesh raises many exception types for unreadable files
        raise NeuralFieldsError(f"cannot read mesh {path}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise NeuralFieldsError(f"mesh {path} has no triangles")
    if not np.all(np.isfinite(mesh.vertices)):
        raise NeuralFieldsError(f"mesh {path} has non-finite vertex coordinates")
    return mesh


def normalize_mesh(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, Normalization]:
    """A copy of `mesh` inside [-0.5, 0.5]^3 and the transform that put it there."""
    norm = Normalization.fit(mesh)
    unit = mesh.copy()
    unit.vertices = norm.to_unit(mesh.vertices)
    return unit, norm


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (cache key for labels computed from it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_mesh(mesh: trimesh.Trimesh, path: str | Path, file_format: str | None = None) -> Path:
    """Write `mesh` as PLY, OBJ or GLB (vertex colours kept where the format allows)."""
    path = Path(path)
    file_format = (file_format or path.suffix.lstrip(".")).lower()
    if file_format not in EXPORT_FORMATS:
        raise NeuralFieldsError(
            f"unsupported mesh format '{file_format}' (choose one of {', '.join(EXPORT_FORMATS)})"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(path, file_type=file_format)
    except OSError as exc:
        raise NeuralFieldsError(f"cannot write mesh {path}: {exc.strerror or exc}") from exc
    return path
