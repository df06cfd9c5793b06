"""Dataset loaders (Blender scenes; photo captures as LLFF, nerfstudio or COLMAP folders) and the embedded demo scene."""

from pathlib import Path

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "data"  # the repo's data/: default home of scenes
