"""The sampler contract (`Estimator`) and `create_sampling_path`, which picks a sampler and its
volume renderer once per device, so the trainer never branches on the device or the sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from neuralfields.rendering import volume
from neuralfields.rendering.occupancy_grid import CpuOccGridEstimator
from neuralfields.rendering.uniform import UniformSampler


@runtime_checkable
class Estimator(Protocol):
    """What every sampler offers: the shape of nerfacc's `OccGridEstimator` (0.5), which
    `CpuOccGridEstimator` and `UniformSampler` share.

    Pass everything after rays_d by keyword: nerfacc's positional order differs (alpha_fn
    follows sigma_fn). Implementations are nn.Modules whose state (the grid) lives in buffers,
    so checkpoints and `.to(device)` carry it; update_every_n_steps requires training mode.
    """

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
        """Packed samples (ray_indices, t_starts, t_ends), sorted by ray and, within a ray, by
        distance; `sigma_fn(t_starts, t_ends, ray_indices) -> sigmas` lets a sampler drop samples
        behind spent transmittance (early_stop_eps) or below opacity alpha_thre. cone_angle > 0
        lengthens the marching step with the distance (clamp(t * cone_angle, render_step_size, inf)),
        for unbounded scenes."""
        ...

    def update_every_n_steps(
        self,
        step: int,
        occ_eval_fn: Callable[[Tensor], Tensor],
        occ_thre: float = 1e-2,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        n: int = 16,
    ) -> None:
        """Every n steps, refresh the sampler's state from `occ_eval_fn(points (N,3)) -> (N,1)`,
        the density times the step size."""
        ...


@dataclass
class SamplingPath:
    """A sampler and the packed volume renderer that goes with it, plus a name to print."""

    name: str
    estimator: Estimator
    rendering: Callable[..., tuple[Tensor, Tensor, Tensor, dict]]


def create_sampling_path(
    device: torch.device, sampler: str = "grid", aabb: list[float] | None = None,
    grid_resolution: int = 128, naive_samples: int = 64, grid_levels: int = 1,
) -> SamplingPath:
    """nerfacc's CUDA estimator and renderer on CUDA, our pure-torch twins elsewhere.

    sampler: "grid" (occupancy grid) or "naive" (uniform samples, for baselines). grid_levels > 1
    stacks grids over boxes 2, 4, ... times the aabb (nerfacc's layout for unbounded scenes).
    """
    aabb = aabb if aabb is not None else [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]
    on_cuda = device.type == "cuda"
    if on_cuda:
        import nerfacc

        render_fn, render_name = nerfacc.rendering, "nerfacc.rendering (CUDA)"
    else:
        render_fn, render_name = volume.rendering, "pure-torch packed rendering (CPU)"
    if sampler == "naive":
        return SamplingPath(f"naive uniform sampler, {naive_samples} samples/ray + {render_name}",
                            UniformSampler(naive_samples).to(device), render_fn)
    if sampler != "grid":
        raise ValueError(f"unknown sampler {sampler!r}: expected 'grid' or 'naive'")
    levels = f" x {grid_levels} levels" if grid_levels > 1 else ""
    if on_cuda:
        estimator = nerfacc.OccGridEstimator(roi_aabb=aabb, resolution=grid_resolution, levels=grid_levels)
        name = f"nerfacc OccGridEstimator {grid_resolution}^3{levels} + {render_name}"
    else:
        estimator = CpuOccGridEstimator(aabb, grid_resolution, levels=grid_levels)
        name = f"pure-torch occupancy grid {grid_resolution}^3{levels} + {render_name}"
    return SamplingPath(name, estimator.to(device), render_fn)
