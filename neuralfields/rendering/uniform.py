"""`UniformSampler`: evenly spaced samples between the near and far planes, the naive baseline
the occupancy grid is measured against."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


class UniformSampler(nn.Module):
    """The naive baseline: `num_samples` evenly spaced samples per ray between the near and far
    planes, no grid and no early termination (sigma_fn and the thresholds are ignored)."""

    def __init__(self, num_samples: int = 64) -> None:
        super().__init__()
        self.num_samples = num_samples

    @torch.no_grad()
    def sampling(
        self,
        rays_o: Tensor,
        rays_d: Tensor,
        *,
        sigma_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        near_plane: float = 0.0,
        far_plane: float = 1e10,
        render_step_size: float = 1e-3,
        early_stop_eps: float = 1e-4,
        alpha_thre: float = 0.0,
        stratified: bool = False,
        cone_angle: float = 0.0,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Packed samples (ray_indices, t_starts, t_ends), `num_samples` per ray; stratified
        shifts each ray's samples by a random fraction of a step. cone_angle is ignored (the
        samples are evenly spaced whatever the distance)."""
        n_rays, n = rays_o.shape[0], self.num_samples
        delta = (far_plane - near_plane) / n
        steps = torch.arange(n, device=rays_o.device, dtype=rays_o.dtype)
        starts = near_plane + steps[None, :].expand(n_rays, n) * delta
        if stratified:
            starts = starts + (torch.rand((n_rays, 1), device=rays_o.device) - 0.5) * delta
        ray_indices = torch.arange(n_rays, device=rays_o.device).repeat_interleave(n)
        t_starts = starts.reshape(-1)
        return ray_indices, t_starts, t_starts + delta

    def update_every_n_steps(
        self,
        step: int,
        occ_eval_fn: Callable[[Tensor], Tensor],
        occ_thre: float = 1e-2,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        n: int = 16,
    ) -> None:
        """Nothing to update: the naive sampler has no grid."""
