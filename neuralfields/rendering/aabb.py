"""Where rays enter and leave an axis-aligned box (the slab test), for samplers that march a box."""

from __future__ import annotations

import torch
from torch import Tensor


def ray_aabb_intersect(rays_o: Tensor, rays_d: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances (t_min, t_max) of each ray through an axis-aligned box (slab test);
    t_max < t_min where the ray misses."""
    inv_d = 1.0 / torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    t_lo = (aabb[:3] - rays_o) * inv_d
    t_hi = (aabb[3:] - rays_o) * inv_d
    t_min = torch.minimum(t_lo, t_hi).amax(dim=-1)
    t_max = torch.maximum(t_lo, t_hi).amin(dim=-1)
    return t_min, t_max
