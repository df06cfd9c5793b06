"""One entry point for posed-image scenes: Blender (transforms_<split>.json) or forward-facing
LLFF (poses_bounds.npy), told apart by the files in the scene folder."""

from __future__ import annotations

from pathlib import Path

from neuralfields.data.blender import ViewSet, load_blender_split
from neuralfields.data.llff import load_llff_scene


def is_llff_scene(scene_dir: str | Path) -> bool:
    return (Path(scene_dir) / "poses_bounds.npy").is_file()


def load_views(scene_dir: str | Path, split: str, downscale: int = 1, background: str = "white") -> ViewSet:
    """One split of a scene. LLFF photos have no alpha, so `background` only applies to Blender
    scenes; LLFF's test and val splits are both its held-out views (every 8th image)."""
    if is_llff_scene(scene_dir):
        return load_llff_scene(scene_dir, split, factor=downscale)
    return load_blender_split(scene_dir, split, downscale, background)
