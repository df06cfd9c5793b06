"""Cameras, ray sampling, volume rendering and image rendering."""
