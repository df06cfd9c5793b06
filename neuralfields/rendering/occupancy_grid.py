"""`CpuOccGridEstimator`: a pure-torch twin of `nerfacc.OccGridEstimator` (one or several levels),
whose sampling needs CUDA. tests/test_nerfacc_reference.py holds the twin to nerfacc itself."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from neuralfields.rendering import volume
from neuralfields.rendering.aabb import ray_aabb_intersect


def enlarged_aabb(aabb: Tensor, factor: float) -> Tensor:
    """The box scaled by `factor` about its centre, computed as nerfacc does (centre -+ half extent)."""
    centre, half_extent = (aabb[:3] + aabb[3:]) / 2, (aabb[3:] - aabb[:3]) / 2
    return torch.cat([centre - half_extent * factor, centre + half_extent * factor])


def marching_boundaries(t_start: Tensor, t_stop: Tensor, step: float, cone_angle: float) -> tuple[Tensor, Tensor]:
    """Sample intervals (starts, ends), each (n_rays, n_steps), of nerfacc's marching rule from
    t_start: each step is clamp(t * cone_angle, step, inf) long -- constant with cone_angle 0,
    growing in proportion to the distance beyond t = step / cone_angle. The table is as wide as the
    longest ray needs to reach t_stop; ends are clipped to t_stop and entries that start past a
    ray's t_stop are there for the caller to mask."""
    if t_start.shape[0] == 0:
        empty = t_start.new_zeros((0, 0))
        return empty, empty
    span = (t_stop - t_start).clamp_min(0.0)
    if cone_angle <= 0.0:
        n_steps = int(torch.ceil(span.max() / step).item())
        k = torch.arange(n_steps, device=t_start.device, dtype=t_start.dtype)
        starts = t_start[:, None] + k[None, :] * step
        return starts, torch.minimum(starts + step, t_stop[:, None])
    # Linear while t * cone_angle <= step, i.e. up to t_switch; geometric (x (1 + cone_angle)) beyond.
    t_switch = step / cone_angle
    n_linear = torch.where(t_start <= t_switch, torch.floor((t_switch - t_start) / step) + 1,
                           torch.zeros_like(t_start))
    t_linear_end = t_start + n_linear * step  # the first boundary past t_switch
    growth = math.log1p(cone_angle)
    need = torch.where(
        t_stop <= t_linear_end, torch.ceil(span / step),
        n_linear + torch.ceil(torch.log(t_stop.clamp_min(1e-12) / t_linear_end) / growth),
    )
    n_steps = int(need.clamp_min(0).max().item())
    k = torch.arange(n_steps + 1, device=t_start.device, dtype=t_start.dtype)[None, :]
    boundaries = torch.where(k < n_linear[:, None], t_start[:, None] + k * step,
                             t_linear_end[:, None] * torch.exp((k - n_linear[:, None]) * growth))
    return boundaries[:, :-1], torch.minimum(boundaries[:, 1:], t_stop[:, None])


class CpuOccGridEstimator(nn.Module):
    """Pure-torch twin of `nerfacc.OccGridEstimator` for CPUs, with one level or several.

    Level l covers the box roi_aabb enlarged 2**l times about its centre (nerfacc's layout for
    unbounded scenes); a point is judged by the finest level that holds it (nerfacc gives the first
    grid priority where they overlap), and points outside the largest box are empty.
    Same state (`occs`: density EMA per cell, levels one after another; `binaries`: occupied cells,
    (levels, res, res, res)), same update rule (every n steps: all cells during warm-up, then per
    level a quarter of the cells at random plus up to as many occupied ones; occs = max(occs * decay,
    new); occupied = occs > min(mean over all levels, occ_thre)), drawing its random numbers in
    nerfacc's order, so that from the same torch seed both grids evolve bit for bit alike.
    Sampling marches nerfacc's steps (fixed, or growing with the distance when cone_angle > 0) from
    where the ray enters the largest box (nerfacc counts them from the near plane: same rule, the
    samples' phase differs), keeps samples whose midpoint lies in an occupied cell,
    then drops samples whose transmittance is spent (early_stop_eps) or whose opacity is below
    alpha_thre, judged by `sigma_fn` -- queried `segment_steps` steps at a time, only for rays still
    alive, which spares the density of occluded samples on CPU.
    """

    def __init__(self, roi_aabb: list[float] | Tensor, resolution: int = 128, levels: int = 1,
                 segment_steps: int = 16) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"an occupancy grid needs at least one level, got {levels}")
        self.segment_steps = segment_steps
        self.levels = levels
        aabb = torch.as_tensor(roi_aabb, dtype=torch.float32).reshape(6)
        # Stored as nerfacc stores them (centre -+ half extent * 2**level): may differ from roi_aabb
        # in the last bit, and the grid's sample points must match nerfacc's exactly.
        aabbs = torch.stack([enlarged_aabb(aabb, 2**level) for level in range(levels)])
        self.cells_per_lvl = resolution**3
        self.register_buffer("resolution", torch.tensor([resolution] * 3, dtype=torch.int32))
        self.register_buffer("aabbs", aabbs)
        self.register_buffer("occs", torch.zeros(levels * self.cells_per_lvl))
        self.register_buffer("binaries", torch.zeros((levels, resolution, resolution, resolution), dtype=torch.bool))
        coords = torch.stack(
            torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), dim=-1
        ).reshape(-1, 3)
        self.register_buffer("grid_coords", coords, persistent=False)

    def _occupied(self, points: Tensor) -> Tensor:
        """Whether each point (N,3) lies in an occupied cell of the finest level holding it; points
        outside the largest box are empty."""
        res = self.resolution.to(points.device)
        occupied = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
        undecided = torch.ones_like(occupied)
        for level in range(self.levels):
            aabb = self.aabbs[level]
            unit = (points - aabb[:3]) / (aabb[3:] - aabb[:3])
            inside = ((unit >= 0) & (unit < 1)).all(dim=-1) & undecided
            cell = (unit * res).long().clamp_min(0)
            cell = torch.minimum(cell, (res - 1).long())
            occupied |= inside & self.binaries[level, cell[:, 0], cell[:, 1], cell[:, 2]]
            undecided &= ~inside
        return occupied

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
        """Packed samples (ray_indices, t_starts, t_ends) in occupied space, nerfacc-style."""
        n_rays = rays_o.shape[0]
        t_min, t_max = ray_aabb_intersect(rays_o, rays_d, self.aabbs[-1])
        t_start = t_min.clamp_min(near_plane)
        t_stop = t_max.clamp_max(far_plane)
        if stratified:
            t_start = t_start + torch.rand_like(t_start) * render_step_size
        starts, ends = marching_boundaries(t_start, t_stop, render_step_size, cone_angle)
        valid = starts < t_stop[:, None]
        mids = (starts + ends) / 2.0
        points = rays_o[:, None, :] + mids[..., None] * rays_d[:, None, :]
        valid &= self._occupied(points.reshape(-1, 3)).reshape(valid.shape)
        ray_indices, step_ids = torch.nonzero(valid, as_tuple=True)  # row-major: sorted by ray
        t_starts = starts[ray_indices, step_ids]
        t_ends = ends[ray_indices, step_ids]

        if sigma_fn is not None and (early_stop_eps > 0.0 or alpha_thre > 0.0) and t_starts.numel():
            alpha_thre = min(alpha_thre, self.occs.mean().item())
            keep = self._visible(ray_indices, step_ids, t_starts, t_ends, sigma_fn, n_rays, early_stop_eps, alpha_thre)
            ray_indices, t_starts, t_ends = ray_indices[keep], t_starts[keep], t_ends[keep]
        return ray_indices, t_starts, t_ends

    def _visible(
        self, ray_indices: Tensor, step_ids: Tensor, t_starts: Tensor, t_ends: Tensor, sigma_fn: Callable,
        n_rays: int, early_stop_eps: float, alpha_thre: float,
    ) -> Tensor:
        """nerfacc's visibility rule (transmittance >= early_stop_eps, opacity >= alpha_thre), judged
        segment by segment along the rays: once a ray's transmittance is spent, the density of its
        remaining samples is never queried. Same result as judging all samples at once, since
        transmittance only falls along a ray."""
        keep = torch.zeros_like(t_starts, dtype=torch.bool)
        optical_depth = torch.zeros(n_rays, device=t_starts.device, dtype=t_starts.dtype)
        last_step = int(step_ids.max().item())
        for first in range(0, last_step + 1, self.segment_steps):
            alive = torch.exp(-optical_depth) >= early_stop_eps
            in_segment = (step_ids >= first) & (step_ids < first + self.segment_steps) & alive[ray_indices]
            picked = torch.nonzero(in_segment)[:, 0]
            if picked.numel() == 0:
                continue
            rays = ray_indices[picked]
            sigma_delta = sigma_fn(t_starts[picked], t_ends[picked], rays).float() * (t_ends[picked] - t_starts[picked])
            before = optical_depth[rays] + volume.exclusive_sum_per_ray(sigma_delta, rays, n_rays)
            visible = torch.exp(-before) >= early_stop_eps
            if alpha_thre > 0:
                visible &= (1.0 - torch.exp(-sigma_delta)) >= alpha_thre
            keep[picked] = visible
            optical_depth.index_add_(0, rays, sigma_delta.to(optical_depth.dtype))
        return keep

    @torch.no_grad()
    def update_every_n_steps(
        self,
        step: int,
        occ_eval_fn: Callable[[Tensor], Tensor],
        occ_thre: float = 1e-2,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        n: int = 16,
    ) -> None:
        """Refresh the grid from `occ_eval_fn(points (N,3)) -> density * step size` every n steps."""
        if not self.training:
            raise RuntimeError("update_every_n_steps is only meant to run in training mode")
        if step % n == 0:
            self._update(step, occ_eval_fn, occ_thre, ema_decay, warmup_steps)

    def _cells_to_update(self, step: int, warmup_steps: int) -> list[Tensor]:
        """Per level, the cells to refresh: all of them during warm-up; then a quarter drawn at
        random plus up to as many occupied ones, drawn with nerfacc's torch.randint calls in
        nerfacc's order (all levels' draws before any cell is evaluated)."""
        device = self.occs.device
        if step < warmup_steps:
            return [torch.arange(self.cells_per_lvl, device=device)] * self.levels
        n = self.cells_per_lvl // 4
        cells = []
        for level in range(self.levels):
            uniform = torch.randint(self.cells_per_lvl, (n,), device=device)
            occupied = torch.nonzero(self.binaries[level].flatten())[:, 0]
            if n < len(occupied):
                occupied = occupied[torch.randint(len(occupied), (n,), device=device)]
            cells.append(torch.cat([uniform, occupied]))
        return cells

    def _update(self, step: int, occ_eval_fn: Callable, occ_thre: float, ema_decay: float, warmup_steps: int) -> None:
        for level, cells in enumerate(self._cells_to_update(step, warmup_steps)):
            aabb = self.aabbs[level]
            coords = self.grid_coords[cells]
            unit = (coords + torch.rand_like(coords, dtype=torch.float32)) / self.resolution
            points = aabb[:3] + unit * (aabb[3:] - aabb[:3])
            occ = occ_eval_fn(points).reshape(-1)
            ids = level * self.cells_per_lvl + cells
            self.occs[ids] = torch.maximum(self.occs[ids] * ema_decay, occ)
        threshold = torch.clamp(self.occs[self.occs >= 0].mean(), max=occ_thre)
        self.binaries = (self.occs > threshold).view(self.binaries.shape)
