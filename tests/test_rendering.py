"""CPU occupancy-grid sampler + packed renderer vs a plain dense-sample renderer, on analytic fields."""

import math

import pytest
import torch
from torch import nn

from neuralfields.rendering import volume
from neuralfields.rendering.cameras import image_rays, look_at, orbit_camtoworlds
from neuralfields.rendering.occupancy_grid import CpuOccGridEstimator
from neuralfields.rendering.render import RenderSettings, render_image
from neuralfields.rendering.sampling import create_sampling_path
from neuralfields.rendering.uniform import UniformSampler


class GaussianBlobs(nn.Module):
    """Two soft balls of density with position-dependent colour: smooth, known, and mostly empty."""

    def __init__(self) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.tensor([[0.3, 0.0, 0.1], [-0.5, 0.2, -0.2]]), requires_grad=False)
        self.heights = torch.tensor([40.0, 15.0])
        self.radii = torch.tensor([0.25, 0.18])

    def query_density(self, points):
        d2 = ((points[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return (self.heights * torch.exp(-d2 / (2 * self.radii**2))).sum(-1)

    def forward(self, points, directions):
        rgb = torch.sigmoid(3 * points + directions)
        return rgb, self.query_density(points)


def dense_reference_image(field, camtoworld, height, width, focal, near, far, n=4000):
    """Classic quadrature with n evenly spaced samples per ray, no grid, no early stop, no packing."""
    origins, directions = (a.reshape(-1, 3) for a in image_rays(camtoworld, height, width, focal))
    t = torch.linspace(near, far, n + 1)
    mids, delta = (t[:-1] + t[1:]) / 2, t[1:] - t[:-1]
    points = origins[:, None] + directions[:, None] * mids[None, :, None]
    rgb, sigma = field(points.reshape(-1, 3), directions[:, None].expand_as(points).reshape(-1, 3))
    sigma_delta = sigma.reshape(-1, n) * delta
    trans = torch.exp(-(torch.cumsum(sigma_delta, 1) - sigma_delta))
    weights = trans * (1 - torch.exp(-sigma_delta))
    color = (weights[..., None] * rgb.reshape(-1, n, 3)).sum(1) + (1 - weights.sum(1, keepdim=True))
    return color.reshape(height, width, 3)


def fill_grid(estimator, field, step_size, occ_thre=1e-6):
    """One warm-up update (all cells); a tiny threshold keeps the faint tails the reference sees."""
    estimator.train()
    estimator.update_every_n_steps(0, lambda x: field.query_density(x)[:, None] * step_size, occ_thre=occ_thre)
    estimator.eval()


@pytest.mark.parametrize("view", [0, 3])
def test_grid_sampler_matches_dense_renderer(view):
    torch.manual_seed(0)
    field = GaussianBlobs()
    path = create_sampling_path(torch.device("cpu"), "grid", grid_resolution=48)
    settings = RenderSettings(near=2.0, far=6.0, render_step_size=4e-3)
    fill_grid(path.estimator, field, settings.render_step_size)
    occupied = path.estimator.binaries.float().mean().item()
    assert 0.005 < occupied < 0.5, "grid should keep the blobs and drop most of the box"
    c2w = orbit_camtoworlds(6, radius=4.0, elevation_deg=20.0)[view]
    ours = render_image(field, path, c2w, 24, 24, 30.0, settings, chunk=200)["rgb"]
    reference = dense_reference_image(field, c2w, 24, 24, 30.0, 2.0, 6.0)
    assert (reference - 1).abs().max() > 0.3, "the view must actually see the blobs"
    assert (ours - reference).abs().max() < 2e-3
    assert (ours - reference).abs().mean() < 2e-4


def test_early_stop_and_grid_cut_samples():
    """Opaque field: the grid skips empty space and rays stop once their transmittance is spent."""
    field = GaussianBlobs()
    field.heights, field.radii = torch.tensor([4000.0, 4000.0]), torch.tensor([0.08, 0.08])
    estimator = CpuOccGridEstimator([-1.5] * 3 + [1.5] * 3, 32)
    fill_grid(estimator, field, 5e-3, occ_thre=1e-2)
    rays_o = torch.tensor([[0.3, 0.0, 4.0]]).repeat(2, 1)
    rays_d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    sigma_fn = lambda s, e, r: field.query_density(rays_o[r] + rays_d[r] * ((s + e) / 2)[:, None])
    bounds = {"near_plane": 2.0, "far_plane": 6.0, "render_step_size": 5e-3}
    _, starts_all, _ = estimator.sampling(rays_o[:1], rays_d[:1], early_stop_eps=0.0, **bounds)
    indices, starts, _ = estimator.sampling(rays_o, rays_d, sigma_fn=sigma_fn, early_stop_eps=1e-4, **bounds)
    assert len(starts_all) < 0.4 * (3.0 / 5e-3), "samples only inside occupied cells"
    assert 0 < (indices == 0).sum() < 0.5 * len(starts_all), "early stopping drops occluded samples"
    assert starts.max() < 4.0 - 0.1 + 0.25, "no sample far behind the opaque surface"


def test_uniform_sampler_is_evenly_spaced():
    ray_indices, t_starts, t_ends = UniformSampler(64).sampling(
        torch.zeros(3, 3), torch.eye(3), near_plane=2.0, far_plane=6.0
    )
    assert ray_indices.tolist() == [i for i in range(3) for _ in range(64)]
    torch.testing.assert_close(t_ends - t_starts, torch.full((192,), 4.0 / 64))
    assert math.isclose(t_starts[0].item(), 2.0) and math.isclose(t_ends[63].item(), 6.0, rel_tol=1e-6)


def test_rendering_gradients_reach_the_field():
    field = nn.Linear(3, 4)
    rays = torch.tensor([0, 0, 1])
    starts = torch.tensor([0.0, 0.5, 0.0])

    def rgb_sigma_fn(s, e, r):
        out = field(torch.stack([s, e, r.float()], -1))
        return torch.sigmoid(out[:, :3]), torch.nn.functional.softplus(out[:, 3])

    colors, opacities, depths, _ = volume.rendering(starts, starts + 0.5, rays, 2, rgb_sigma_fn)
    colors.sum().backward()
    assert field.weight.grad.abs().sum() > 0
    assert colors.shape == (2, 3) and opacities.shape == (2, 1) and depths.shape == (2, 1)


def test_segmented_visibility_matches_all_at_once_with_fewer_queries():
    """Judging visibility segment by segment keeps exactly nerfacc's samples, querying less density."""
    field = GaussianBlobs()
    field.heights = torch.tensor([400.0, 150.0])
    results, queried = [], []
    for segment_steps in (8, 10**6):
        estimator = CpuOccGridEstimator([-1.5] * 3 + [1.5] * 3, 32, segment_steps=segment_steps)
        torch.manual_seed(0)
        fill_grid(estimator, field, 0.01)
        c2w = orbit_camtoworlds(4, radius=4.0, elevation_deg=10.0)[1]
        rays_o, rays_d = (a.reshape(-1, 3) for a in image_rays(c2w, 20, 20, 25.0))
        count = {"n": 0}

        def sigma_fn(s, e, r):
            count["n"] += len(s)
            return field.query_density(rays_o[r] + rays_d[r] * ((s + e) / 2)[:, None])

        results.append(estimator.sampling(rays_o, rays_d, sigma_fn=sigma_fn, near_plane=2.0, far_plane=6.0,
                                          render_step_size=0.01, early_stop_eps=1e-3, alpha_thre=1e-3))
        queried.append(count["n"])
    for segmented, at_once in zip(*results):
        assert torch.equal(segmented, at_once)
    assert queried[0] < 0.8 * queried[1], queried


# ----------------------------------------------------------------------------- unbounded scenes


def test_cone_marching_follows_nerfacc_step_rule():
    """Steps of clamp(t * cone_angle, step, inf): fixed up to t = step / cone_angle, then growing,
    as a plain loop computes them; each ray's table reaches its far end."""
    from neuralfields.rendering.occupancy_grid import marching_boundaries

    t_start, t_stop = torch.tensor([0.2, 0.9, 3.0]), torch.tensor([6.0, 1.4, 40.0])
    starts, ends = marching_boundaries(t_start, t_stop, 0.01, 0.02)
    for ray in range(3):
        t, expected = float(t_start[ray]), []
        while t < float(t_stop[ray]):
            expected.append(t)
            t += max(t * 0.02, 0.01)
        valid = starts[ray] < t_stop[ray]
        torch.testing.assert_close(starts[ray][valid], torch.tensor(expected), rtol=1e-5, atol=1e-5)
        assert ends[ray][valid][-1] == t_stop[ray]
    assert starts.shape[1] < 300  # 40 / 0.01 = 4000 fixed steps; growing steps need ~200


def test_multi_level_grid_renders_far_content_like_the_dense_renderer():
    """A blob far outside the base box (at distance ~5 from the origin, inside the third level) is
    sampled by the coarse levels with growing steps and rendered as the dense quadrature does."""
    torch.manual_seed(0)
    field = GaussianBlobs()
    field.centres.data = torch.tensor([[0.2, 0.0, 0.1], [-4.5, 1.0, 0.5]])
    field.radii = torch.tensor([0.25, 0.6])
    path = create_sampling_path(torch.device("cpu"), "grid", aabb=[-1.0] * 3 + [1.0] * 3, grid_resolution=32,
                                grid_levels=4)
    settings = RenderSettings(near=0.1, far=1e10, render_step_size=2e-3, cone_angle=1e-3)
    fill_grid(path.estimator, field, settings.render_step_size)
    assert path.estimator.binaries[2].any() and "x 4 levels" in path.name
    c2w = look_at(torch.tensor([[3.0, -1.0, 0.3]]), torch.tensor([-2.0, 0.5, 0.3]))[0]
    ours = render_image(field, path, c2w, 16, 16, 12.0, settings, chunk=100)["rgb"]
    reference = dense_reference_image(field, c2w, 16, 16, 12.0, 0.1, 16.0, n=12000)
    assert (reference - 1).abs().max() > 0.3, "the view must see the far blob"
    assert (ours - reference).abs().max() < 2e-2
    assert (ours - reference).abs().mean() < 2e-3


def test_sphere_contraction():
    from neuralfields.rendering.contraction import contract

    points = torch.randn(1000, 3) * 5
    contracted = contract(points, "sphere")
    norms = points.norm(dim=-1)
    torch.testing.assert_close(contracted[norms <= 1], points[norms <= 1])
    assert contracted.norm(dim=-1).max() < 2.0
    far = torch.tensor([[1e6, 0.0, 0.0], [1.0 + 1e-6, 0.0, 0.0]])
    torch.testing.assert_close(contract(far, "sphere"), torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert contract(points, "none") is points
    settings = RenderSettings(contraction="sphere")
    torch.testing.assert_close(settings.field_points(points), contracted)
