"""Packed volume rendering in pure torch, mirroring nerfacc 0.5's `rendering` semantics.

nerfacc's packed functions are CUDA-only; these run anywhere. Samples are "packed": a flat list
of intervals (t_starts, t_ends) with the ray each belongs to (ray_indices), sorted by ray and,
within a ray, by distance. Transmittance is T_i = exp(-sum_{j<i} sigma_j * delta_j) and the
opacity of a sample is alpha_i = 1 - exp(-sigma_i * delta_i), exactly as in nerfacc.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def _positions_in_ray(ray_indices: Tensor, n_rays: int) -> tuple[Tensor, int]:
    """Index of every packed sample inside its own ray, and the longest ray's sample count."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    positions = torch.arange(ray_indices.shape[0], device=ray_indices.device) - starts[ray_indices]
    return positions, int(counts.max().item()) if counts.numel() else 0


def exclusive_sum_per_ray(values: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """sum_{j<i} values_j within each ray, for packed samples sorted by ray.

    Scatters into a padded (n_rays, longest) table so each ray is summed on its own
    (a single global cumsum would lose float32 precision over many rays). Differentiable.
    """
    if values.shape[0] == 0:
        return values
    positions, longest = _positions_in_ray(ray_indices, n_rays)
    table = values.new_zeros((n_rays, longest))
    table = table.index_put((ray_indices, positions), values)
    inclusive = torch.cumsum(table, dim=1)
    return (inclusive - table)[ray_indices, positions]


def render_transmittance_from_density(
    t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, ray_indices: Tensor, n_rays: int
) -> tuple[Tensor, Tensor]:
    """Transmittance before each sample and each sample's opacity: (trans, alphas), both (N,)."""
    sigma_delta = sigmas * (t_ends - t_starts)
    alphas = 1.0 - torch.exp(-sigma_delta)
    trans = torch.exp(-exclusive_sum_per_ray(sigma_delta, ray_indices, n_rays))
    return trans, alphas


def accumulate_along_rays(
    weights: Tensor, ray_indices: Tensor, n_rays: int, values: Tensor | None = None
) -> Tensor:
    """Per-ray sum of weights * values ((n_rays, D)); of the weights alone when values is None."""
    src = weights[:, None] if values is None else weights[:, None] * values
    out = src.new_zeros((n_rays, src.shape[-1]))
    return out.index_add(0, ray_indices, src)


def rendering(
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor,
    n_rays: int,
    rgb_sigma_fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    render_bkgd: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, dict]:
    """Render packed samples: (colors (n_rays,3), opacities (n_rays,1), depths (n_rays,1), extras).

    Same call and return shape as `nerfacc.rendering` with packed inputs. `rgb_sigma_fn(t_starts,
    t_ends, ray_indices)` returns post-activation (rgbs (N,3), sigmas (N,)). Differentiable with
    respect to what rgb_sigma_fn returns.
    """
    if t_starts.shape[0] == 0:
        rgbs = t_starts.new_empty((0, 3))
        sigmas = t_starts.new_empty((0,))
    else:
        rgbs, sigmas = rgb_sigma_fn(t_starts, t_ends, ray_indices)
    trans, alphas = render_transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)
    weights = trans * alphas
    colors = accumulate_along_rays(weights, ray_indices, n_rays, rgbs)
    opacities = accumulate_along_rays(weights, ray_indices, n_rays)
    midpoints = ((t_starts + t_ends) / 2.0)[:, None]
    depths = accumulate_along_rays(weights, ray_indices, n_rays, midpoints)
    depths = depths / opacities.clamp_min(torch.finfo(depths.dtype).eps)
    if render_bkgd is not None:
        colors = colors + render_bkgd * (1.0 - opacities)
    extras = {"weights": weights, "alphas": alphas, "trans": trans, "sigmas": sigmas, "rgbs": rgbs}
    return colors, opacities, depths, extras
