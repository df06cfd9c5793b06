"""The embedded demo scene: a procedural coloured object rendered by our own code into the Blender format.

The object ("the shrine") is built from trimesh primitives inside [-1.5, 1.5]^3 (world Z up): a
ring-textured base disc, a segmented ball, a thin tilted torus, four thin pillars joined by a thin
square frame, a checkered cone, a thin antenna with a tip ball and a checkered cube. Each view is
ray cast with open3d's RaycastingScene (one ray per pixel centre, the same rays as
neuralfields.rendering.cameras.image_rays), shaded with two fixed Lambert lights (view-independent,
as a radiance field can represent exactly), coloured per part with a procedural texture, and
alpha = hit. Cameras look at the origin from radius 4 on the upper hemisphere (random, seeded, for
train/val; an even orbit for test), so the Blender near/far of 2/6 bracket the object.
The scene is written once under `root` (transforms_{train,val,test}.json, RGBA PNGs, the
ground-truth mesh.ply with per-part vertex colours) and reused while its parameters match.
mesh.ply is the union of closed parts that touch and overlap (not one watertight surface): exact
for ray hits, depths and surface distances, not for parity-based inside/outside tests.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
import torch
import trimesh
from neuralfields.progress import progress_bar

from neuralfields.data import DEFAULT_DATA_ROOT
from neuralfields.media import save_png
from neuralfields.errors import NeuralFieldsError
from neuralfields.rendering.cameras import image_rays, look_at, orbit_camtoworlds

GENERATOR_VERSION = 2
STAMP_NAME = "demo_scene.json"
CAMERA_ANGLE_X = 0.6911112070083618  # radians, as in the NeRF synthetic scenes
CAMERA_RADIUS = 4.0
TEST_ELEVATION_DEG = 30.0
TRAIN_ELEVATION_RANGE_DEG = (5.0, 75.0)
KEY_LIGHT = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])
FILL_LIGHT = np.array([-0.6, 0.7, 0.2]) / np.linalg.norm([-0.6, 0.7, 0.2])

Texture = Callable[[np.ndarray], np.ndarray]  # world points (N,3) -> blend factor in [0,1] (N,)


def _checker(cell: float) -> Texture:
    # the quarter-cell offset keeps box faces at multiples of the cell off the checker's cell borders
    return lambda p: (np.floor(p / cell + 0.25).sum(axis=-1) % 2).astype(np.float64)


def _rings(period: float) -> Texture:
    return lambda p: 0.5 + 0.5 * np.cos(2 * math.pi * np.hypot(p[:, 0], p[:, 1]) / period)


def _segments(count: int) -> Texture:
    return lambda p: (np.sin(count * np.arctan2(p[:, 1], p[:, 0])) > 0).astype(np.float64)


def _bands(period: float) -> Texture:
    return lambda p: (np.sin(2 * math.pi * p[:, 2] / period) > 0).astype(np.float64)


def _above(height: float) -> Texture:
    return lambda p: (p[:, 2] > height).astype(np.float64)


def _plain(p: np.ndarray) -> np.ndarray:
    return np.zeros(len(p))


@dataclass(frozen=True)
class DemoPart:
    """One coloured piece of the demo object: colour = lerp(colour_a, colour_b, texture(point))."""

    name: str
    mesh: trimesh.Trimesh
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    texture: Texture


def _translated(mesh: trimesh.Trimesh, offset: tuple[float, float, float]) -> trimesh.Trimesh:
    mesh.apply_translation(offset)
    return mesh


def _bar(start: tuple[float, float, float], end: tuple[float, float, float], thickness: float) -> trimesh.Trimesh:
    """A thin square-section box from start to end."""
    start_v, end_v = np.asarray(start), np.asarray(end)
    length = float(np.linalg.norm(end_v - start_v))
    box = trimesh.creation.box(extents=(thickness, thickness, length))
    axis = (end_v - start_v) / length
    box.apply_transform(trimesh.geometry.align_vectors([0.0, 0.0, 1.0], axis))
    return _translated(box, tuple((start_v + end_v) / 2))


def build_demo_parts() -> list[DemoPart]:
    """The parts of the demo object, in world coordinates (Z up, centred near the origin)."""
    pillar_xy = 0.5
    pillar_top, pillar_bottom = 0.35, -0.68  # pillars start inside the base (top at z = -0.64)
    corners = [(sx * pillar_xy, sy * pillar_xy) for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    pillars = trimesh.util.concatenate([
        trimesh.creation.cylinder(0.035, segment=[(x, y, pillar_bottom), (x, y, pillar_top)], sections=16)
        for x, y in corners
    ])
    frame = trimesh.util.concatenate([
        _bar((*corners[i], pillar_top), (*corners[(i + 1) % 4], pillar_top), 0.05) for i in range(4)
    ])
    torus = trimesh.creation.torus(0.64, 0.04, major_sections=64, minor_sections=12)
    torus.apply_transform(trimesh.transformations.rotation_matrix(math.radians(25), [1, 0, 0]))
    antenna = trimesh.util.concatenate([
        trimesh.creation.cylinder(0.018, segment=[(0, 0, 0.55), (0, 0, 1.0)], sections=12),
        _translated(trimesh.creation.icosphere(subdivisions=2, radius=0.07), (0, 0, 1.0)),
    ])
    return [
        DemoPart("base", _translated(trimesh.creation.cylinder(0.9, 0.12, sections=64), (0, 0, -0.7)),
                 (0.18, 0.28, 0.55), (0.55, 0.70, 0.90), _rings(0.18)),
        DemoPart("ball", _translated(trimesh.creation.icosphere(subdivisions=3, radius=0.36), (0, 0, -0.2)),
                 (0.85, 0.12, 0.10), (0.98, 0.85, 0.20), _segments(6)),
        DemoPart("torus", torus, (0.10, 0.55, 0.20), (0.55, 0.90, 0.45), _bands(0.08)),
        DemoPart("pillars", pillars, (0.95, 0.95, 0.92), (0.95, 0.50, 0.10), _bands(0.12)),
        DemoPart("frame", frame, (0.90, 0.45, 0.05), (0.90, 0.45, 0.05), _plain),
        DemoPart("cone", _translated(trimesh.creation.cone(0.2, 0.45, sections=48), (0, 0, 0.12)),
                 (0.45, 0.15, 0.60), (0.85, 0.70, 0.95), _checker(0.1)),
        DemoPart("antenna", antenna, (0.25, 0.25, 0.25), (0.98, 0.90, 0.10), _above(0.92)),
        DemoPart("cube", _translated(trimesh.creation.box(extents=(0.28, 0.28, 0.28)), (0.0, -0.62, -0.51)),
                 (0.05, 0.45, 0.75), (0.95, 0.95, 0.95), _checker(0.07)),
    ]


def demo_mesh(parts: list[DemoPart] | None = None) -> trimesh.Trimesh:
    """All parts in one mesh, vertices coloured with each part's first colour (the ground truth)."""
    parts = build_demo_parts() if parts is None else parts
    meshes = []
    for part in parts:
        mesh = part.mesh.copy()
        mesh.visual.vertex_colors = np.append(np.round(np.asarray(part.colour_a) * 255), 255).astype(np.uint8)
        meshes.append(mesh)
    return trimesh.util.concatenate(meshes)


def raycasting_scene(meshes: list[trimesh.Trimesh]) -> o3d.t.geometry.RaycastingScene:
    """An open3d raycasting scene holding the meshes; geometry id i is meshes[i]."""
    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        scene.add_triangles(
            o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
        )
    return scene


def render_view(scene: o3d.t.geometry.RaycastingScene, parts: list[DemoPart], camtoworld: torch.Tensor,
                height: int, width: int, focal: float) -> np.ndarray:
    """Render one RGBA view (H, W, 4) in [0, 1]: per-part textured colour, two Lambert lights, alpha = hit."""
    origins, directions = image_rays(camtoworld, height, width, focal)
    rays = torch.cat([origins, directions], dim=-1).reshape(-1, 6).numpy()
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    t_hit = hits["t_hit"].numpy()
    hit = np.isfinite(t_hit)
    part_ids = hits["geometry_ids"].numpy().astype(np.int64)
    normals = hits["primitive_normals"].numpy().astype(np.float64)
    ray_dirs = rays[:, 3:].astype(np.float64)
    normals = np.where((normals * ray_dirs).sum(-1, keepdims=True) > 0, -normals, normals)  # face the camera
    points = rays[:, :3] + t_hit[:, None] * ray_dirs

    albedo = np.zeros((len(rays), 3))
    for index, part in enumerate(parts):
        mask = hit & (part_ids == index)
        if mask.any():
            blend = part.texture(points[mask])[:, None]
            albedo[mask] = (1 - blend) * np.asarray(part.colour_a) + blend * np.asarray(part.colour_b)
    shade = 0.3 + 0.6 * np.clip(normals @ KEY_LIGHT, 0, None) + 0.25 * np.clip(normals @ FILL_LIGHT, 0, None)
    rgb = np.clip(albedo * shade[:, None], 0.0, 1.0) * hit[:, None]
    rgba = np.concatenate([rgb, hit[:, None].astype(np.float64)], axis=-1)
    return rgba.reshape(height, width, 4)


def demo_camtoworlds(split: str, num_views: int, seed: int) -> torch.Tensor:
    """Cameras of one split: seeded random upper-hemisphere views (train/val) or an even orbit (test)."""
    if split == "test":
        return orbit_camtoworlds(num_views, CAMERA_RADIUS, TEST_ELEVATION_DEG)
    rng = np.random.default_rng([seed, ("train", "val").index(split)])
    low, high = (math.sin(math.radians(a)) for a in TRAIN_ELEVATION_RANGE_DEG)
    z = rng.uniform(low, high, num_views)  # uniform in z = uniform area on the sphere band
    azimuth = rng.uniform(0.0, 2 * math.pi, num_views)
    ring = np.sqrt(1 - z**2)
    eye = CAMERA_RADIUS * np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=-1)
    return look_at(torch.from_numpy(eye).float(), torch.zeros(3))


def _write_scene(out_dir: Path, settings: dict) -> None:
    parts = build_demo_parts()
    scene = raycasting_scene([part.mesh for part in parts])
    resolution = settings["resolution"]
    focal = 0.5 * resolution / math.tan(0.5 * CAMERA_ANGLE_X)
    splits = {split: settings[f"num_{split}"] for split in ("train", "val", "test")}
    progress = progress_bar(total=sum(splits.values()), desc="rendering demo scene", unit="view", leave=False)
    for split, num_views in splits.items():
        (out_dir / split).mkdir()
        poses = demo_camtoworlds(split, num_views, settings["seed"])
        frames = []
        for index, pose in enumerate(poses):
            rgba = render_view(scene, parts, pose, resolution, resolution, focal)
            save_png(out_dir / split / f"r_{index}.png", rgba)
            frames.append({"file_path": f"./{split}/r_{index}", "transform_matrix": pose.tolist()})
            progress.update()
        transforms = {"camera_angle_x": CAMERA_ANGLE_X, "near": 2.0, "far": 6.0, "frames": frames}
        (out_dir / f"transforms_{split}.json").write_text(json.dumps(transforms, indent=2))
    progress.close()
    demo_mesh(parts).export(out_dir / "mesh.ply")
    (out_dir / STAMP_NAME).write_text(json.dumps(settings, indent=2))  # written last: marks a complete scene


def _has_settings(root: Path, settings: dict) -> bool:
    """Whether root holds a complete demo scene made with these settings."""
    try:
        return json.loads((root / STAMP_NAME).read_text()) == settings
    except (OSError, json.JSONDecodeError):
        return False


def ensure_demo_scene(root: str | Path | None = None, seed: int = 0, resolution: int = 100,
                      num_train: int = 40, num_val: int = 10, num_test: int = 10) -> Path:
    """Generate the demo scene under root (default <repo>/data/demo) once and return root.

    It is reused while the settings match; a folder from other settings is regenerated; a non-empty
    folder that is not a demo scene is left alone (NeuralFieldsError). Generation writes to a
    temporary sibling folder, then renames it into place.
    """
    root = DEFAULT_DATA_ROOT / "demo" if root is None else Path(root)
    settings = {"generator_version": GENERATOR_VERSION, "seed": seed, "resolution": resolution,
                "num_train": num_train, "num_val": num_val, "num_test": num_test}
    if _has_settings(root, settings):
        return root
    if not (root / STAMP_NAME).is_file() and root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise NeuralFieldsError(f"{root} exists and is not a demo scene folder; remove it or choose another root")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    except OSError as exc:
        raise NeuralFieldsError(f"cannot create the demo scene under {root.parent}: {exc.strerror}") from None
    try:
        _write_scene(tmp_dir, settings)
        if _has_settings(root, settings):  # another process finished the same scene meanwhile
            return root
        if root.exists():
            shutil.rmtree(root)
        tmp_dir.rename(root)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return root
