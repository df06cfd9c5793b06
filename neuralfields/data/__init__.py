"""Dataset loaders (Blender, LLFF) and the embedded demo scene."""
