"""Rendering rays and whole images from a radiance field through a SamplingPath.

`render_rays` is the training-time call; `render_rays_chunked` renders any set of rays without
autograd, and `render_image` uses it for one camera (evaluation, videos and the viewer alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralfields.rendering.cameras import image_rays
from neuralfields.rendering.contraction import contract
from neuralfields.rendering.sampling import SamplingPath


@dataclass(frozen=True)
class RenderSettings:
    """Ray bounds, marching step and stopping thresholds, the background colour, whether rays
    live in normalised device coordinates (forward-facing scenes; near/far are then 0/1), and for
    unbounded scenes the step's growth with distance (cone_angle, nerfacc's) and the contraction
    the field sees points through ("none" or "sphere", see rendering/contraction.py)."""

    near: float = 2.0
    far: float = 6.0
    render_step_size: float = 5e-3
    early_stop_eps: float = 1e-4
    alpha_thre: float = 0.0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ndc: bool = False
    cone_angle: float = 0.0
    contraction: str = "none"

    def field_points(self, points: Tensor) -> Tensor:
        """World points (N,3) as the field is asked about them (contracted for unbounded scenes)."""
        return contract(points, self.contraction)


def render_rays(
    field: nn.Module, path: SamplingPath, rays_o: Tensor, rays_d: Tensor,
    settings: RenderSettings, stratified: bool = False,
) -> dict[str, Tensor | int]:
    """Render rays (N,3)+(N,3): rgb (N,3), opacity (N,), depth (N,) and num_samples (an int)."""
    view_dirs = F.normalize(rays_d, dim=-1) if settings.ndc else rays_d  # NDC directions are not unit

    def points_of(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
        points = rays_o[ray_indices] + rays_d[ray_indices] * ((t_starts + t_ends) / 2.0)[:, None]
        return settings.field_points(points)

    def sigma_fn(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
        return field.query_density(points_of(t_starts, t_ends, ray_indices))

    def rgb_sigma_fn(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> tuple[Tensor, Tensor]:
        return field(points_of(t_starts, t_ends, ray_indices), view_dirs[ray_indices])

    ray_indices, t_starts, t_ends = path.estimator.sampling(
        rays_o, rays_d, sigma_fn=sigma_fn, near_plane=settings.near, far_plane=settings.far,
        render_step_size=settings.render_step_size, early_stop_eps=settings.early_stop_eps,
        alpha_thre=settings.alpha_thre, stratified=stratified, cone_angle=settings.cone_angle,
    )
    background = torch.tensor(settings.background, dtype=rays_o.dtype, device=rays_o.device)
    rgb, opacity, depth, _ = path.rendering(
        t_starts, t_ends, ray_indices.long(), n_rays=rays_o.shape[0],
        rgb_sigma_fn=rgb_sigma_fn, render_bkgd=background,
    )
    return {"rgb": rgb, "opacity": opacity[:, 0], "depth": depth[:, 0], "num_samples": int(t_starts.shape[0])}


@torch.no_grad()
def render_rays_chunked(
    field: nn.Module, path: SamplingPath, rays_o: Tensor, rays_d: Tensor, settings: RenderSettings,
    chunk: int = 4096,
) -> dict[str, Tensor]:
    """Render any number of rays (N,3)+(N,3) without autograd, `chunk` rays at a time:
    rgb (N,3) clamped to [0, 1], depth (N,), opacity (N,), on the CPU."""
    parts: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "opacity": []}
    for start in range(0, rays_o.shape[0], chunk):
        out = render_rays(field, path, rays_o[start:start + chunk], rays_d[start:start + chunk], settings)
        for key in parts:
            parts[key].append(out[key].float().cpu())
    rendered = {key: torch.cat(values) for key, values in parts.items()}
    rendered["rgb"] = rendered["rgb"].clamp(0.0, 1.0)
    return rendered


def render_image(
    field: nn.Module, path: SamplingPath, camtoworld: Tensor, height: int, width: int, focal: float,
    settings: RenderSettings, chunk: int = 4096,
) -> dict[str, Tensor]:
    """Render one view in chunks of rays: rgb (H,W,3), depth (H,W), opacity (H,W), on the CPU."""
    device = next(field.parameters()).device
    origins, directions = image_rays(camtoworld.to(device), height, width, focal, ndc=settings.ndc)
    image = render_rays_chunked(field, path, origins.reshape(-1, 3), directions.reshape(-1, 3), settings, chunk)
    return {
        "rgb": image["rgb"].reshape(height, width, 3),
        "depth": image["depth"].reshape(height, width),
        "opacity": image["opacity"].reshape(height, width),
    }
