"""Marching cubes, mesh labels, metrics and export."""
