"""Our pure-torch twins against nerfacc itself, wherever nerfacc runs on the CPU: its batched
(n_rays, n_samples) rendering and visibility functions, and OccGridEstimator's grid update."""

import inspect

import nerfacc
import pytest
import torch

from neuralfields.rendering import volume
from neuralfields.rendering.occupancy_grid import CpuOccGridEstimator
from neuralfields.rendering.sampling import Estimator
from neuralfields.rendering.uniform import UniformSampler

# Off-centre on purpose: nerfacc stores a box as centre -+ half extent, which here differs from
# these numbers in the last bit.
AABB = [-1.3, -0.7, -0.9, 1.1, 1.7, 0.8]


def sphere_occupancy(radius, step_size=5e-3):
    """occ_eval_fn of a soft ball of density: density * step size, (N,1), as nerfacc expects."""
    centre = torch.tensor([0.1, 0.3, -0.2])

    def occ_eval_fn(points):
        inside = radius - (points - centre).norm(dim=-1)
        return (200.0 * torch.sigmoid(20.0 * inside))[:, None] * step_size

    return occ_eval_fn


def padded(values, ray_indices, n_rays):
    """Packed per-sample values (sorted by ray) as a batched (n_rays, longest) table, zero after
    each ray's samples, and the mask of the real entries."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    real = torch.arange(int(counts.max())) < counts[:, None]
    table = values.new_zeros(real.shape)
    table[real] = values
    return table, real


@pytest.mark.parametrize("estimator", [CpuOccGridEstimator(AABB, 8), CpuOccGridEstimator(AABB, 8, levels=3),
                                       UniformSampler(8), nerfacc.OccGridEstimator(AABB, 8, levels=1)],
                         ids=["CpuOccGridEstimator", "CpuOccGridEstimator-3-levels", "UniformSampler",
                              "nerfacc.OccGridEstimator"])
def test_estimators_share_the_estimator_protocol(estimator):
    """Every sampler, nerfacc's included, is an Estimator and takes each of its keywords."""
    assert isinstance(estimator, Estimator)
    rays = torch.zeros(2, 3)
    inspect.signature(estimator.sampling).bind(
        rays, rays, sigma_fn=None, near_plane=2.0, far_plane=6.0, render_step_size=1e-2,
        early_stop_eps=1e-4, alpha_thre=0.0, stratified=False, cone_angle=0.004,
    )
    inspect.signature(estimator.update_every_n_steps).bind(
        0, sphere_occupancy(0.5), occ_thre=1e-2, ema_decay=0.95, warmup_steps=256, n=16,
    )


@pytest.mark.parametrize("samples_per_ray", [[12] * 6, [0, 1, 5, 12, 3, 9]], ids=["equal", "unequal"])
def test_packed_rendering_matches_nerfacc_batched(samples_per_ray):
    """Weights, colours, opacities and depths of volume.rendering on packed samples equal
    nerfacc.rendering on the same samples batched (short rays padded with zero density)."""
    torch.manual_seed(0)
    n_rays, longest = len(samples_per_ray), max(samples_per_ray)
    real = torch.arange(longest) < torch.tensor(samples_per_ray)[:, None]
    widths = torch.rand(n_rays, longest) * 0.3 + 0.02
    t_ends = 2.0 + torch.cumsum(widths, dim=1)
    t_starts = t_ends - widths * torch.where(torch.rand(n_rays, longest) < 0.3, 0.5, 1.0)  # some gaps
    sigmas = torch.rand(n_rays, longest) * torch.logspace(-1.5, 1.0, n_rays)[:, None] * real  # faint to dense
    rgbs = torch.rand(n_rays, longest, 3)
    background = torch.tensor([0.2, 0.5, 1.0])
    ray_indices = torch.nonzero(real)[:, 0]

    theirs = nerfacc.rendering(t_starts, t_ends, rgb_sigma_fn=lambda s, e, r: (rgbs, sigmas),
                               render_bkgd=background)
    ours = volume.rendering(t_starts[real], t_ends[real], ray_indices, n_rays,
                            lambda s, e, r: (rgbs[real], sigmas[real]), render_bkgd=background)

    assert theirs[1].min() < 0.5 < theirs[1].max(), "rays from clear to nearly opaque"
    for name, mine, reference in zip(["colors", "opacities", "depths"], ours[:3], theirs[:3]):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-6, msg=name)
    for key in ("weights", "trans", "alphas"):
        torch.testing.assert_close(ours[3][key], theirs[3][key][real], rtol=1e-6, atol=1e-6, msg=key)
    torch.testing.assert_close(theirs[3]["weights"][~real], torch.zeros(int((~real).sum())))


def grid_history(estimator, occ_eval_fn, updates=40):
    """(occs, binaries) after each of `updates` grid updates (16 in warm-up), from torch seed 0."""
    estimator.train()
    torch.manual_seed(0)
    history = []
    for update in range(updates):
        estimator.update_every_n_steps(update * 2, occ_eval_fn, warmup_steps=32, n=2)
        history.append((estimator.occs.clone(), estimator.binaries.clone()))
    return history


@pytest.mark.parametrize("radius", [0.4, 0.7], ids=["few-occupied", "many-occupied"])
def test_grid_update_matches_nerfacc_bit_for_bit(radius):
    """40 updates from one seed -- warm-up, then random cells -- leave our grid and nerfacc's
    identical (occs and binaries) after every update, which needs the same random draws in the
    same order. With the larger ball more than a quarter of the cells are occupied, so that
    occupied cells are drawn at random too."""
    occ_eval_fn = sphere_occupancy(radius)
    ours = grid_history(CpuOccGridEstimator(AABB, 16), occ_eval_fn)
    theirs = grid_history(nerfacc.OccGridEstimator(AABB, 16, levels=1), occ_eval_fn)
    for update, ((occs, binaries), (ref_occs, ref_binaries)) in enumerate(zip(ours, theirs)):
        assert torch.equal(occs, ref_occs), f"occs differ after update {update}"
        assert torch.equal(binaries, ref_binaries), f"binaries differ after update {update}"
    occupied = [int(binaries.sum()) for _, binaries in ours]
    assert 0 < occupied[-1] < 16**3
    assert (max(occupied[16:]) > 16**3 // 4) == (radius == 0.7), occupied


@pytest.mark.parametrize("radius", [0.4, 1.6], ids=["inner-level", "outer-levels"])
def test_multi_level_grid_update_matches_nerfacc_bit_for_bit(radius):
    """The same with three levels (boxes 1x, 2x, 4x the aabb, nerfacc's unbounded layout): each level
    draws its cells in nerfacc's order and the threshold spans all levels. The larger ball reaches
    beyond the base box."""
    occ_eval_fn = sphere_occupancy(radius)
    ours = grid_history(CpuOccGridEstimator(AABB, 8, levels=3), occ_eval_fn, updates=30)
    theirs = grid_history(nerfacc.OccGridEstimator(AABB, 8, levels=3), occ_eval_fn, updates=30)
    assert torch.equal(CpuOccGridEstimator(AABB, 8, levels=3).aabbs, nerfacc.OccGridEstimator(AABB, 8, levels=3).aabbs)
    for update, ((occs, binaries), (ref_occs, ref_binaries)) in enumerate(zip(ours, theirs)):
        assert torch.equal(occs, ref_occs), f"occs differ after update {update}"
        assert torch.equal(binaries, ref_binaries), f"binaries differ after update {update}"
    per_level = ours[-1][1].flatten(1).sum(dim=1)
    assert (per_level > 0).all() and per_level[-1] < 8**3, per_level  # occupied and empty cells


def test_multi_level_lookup_matches_nerfacc_query():
    """A point is judged by the finest level that holds it and is empty beyond the largest box, as
    nerfacc's own multi-level lookup (nerfacc.grid._query) says."""
    from nerfacc.grid import _query

    estimator = CpuOccGridEstimator(AABB, 8, levels=3)
    torch.manual_seed(0)
    estimator.binaries = torch.rand(estimator.binaries.shape) < 0.5
    points = torch.cat([torch.rand(20000, 3) * 12 - 6, torch.rand(5000, 3) * 2 - 1])
    reference, _ = _query(points, estimator.binaries, estimator.aabbs[0])
    ours = estimator._occupied(points)
    assert torch.equal(ours, reference.bool())
    assert 0.2 < ours.float().mean() < 0.5  # occupied cells at every level, empty space beyond the largest box


def test_grid_sampler_visibility_matches_nerfacc():
    """The samples our grid keeps after early stopping and the opacity threshold are exactly those
    nerfacc.render_visibility_from_density keeps among all of the grid's samples."""
    estimator = CpuOccGridEstimator(AABB, 16, segment_steps=8)
    estimator.train()
    torch.manual_seed(0)
    estimator.update_every_n_steps(0, sphere_occupancy(0.5, step_size=0.01), occ_thre=1e-3)
    estimator.eval()
    rays_o = torch.tensor([[0.1, 0.3, 4.0]]) + torch.randn(64, 3) * torch.tensor([0.4, 0.4, 0.0])
    rays_d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0]]) + torch.randn(64, 3) * 0.05, dim=-1)
    density = sphere_occupancy(0.5, step_size=1.0)

    def sigma_fn(t_starts, t_ends, ray_indices):
        mids = (t_starts + t_ends)[:, None] / 2.0
        return density(rays_o[ray_indices] + rays_d[ray_indices] * mids)[:, 0]

    marching = {"near_plane": 2.0, "far_plane": 6.0, "render_step_size": 0.01}
    ray_indices, t_starts, t_ends = estimator.sampling(rays_o, rays_d, **marching)
    alpha_thre = 0.05
    kept = estimator.sampling(rays_o, rays_d, sigma_fn=sigma_fn, early_stop_eps=1e-3, alpha_thre=alpha_thre, **marching)

    batched_starts, real = padded(t_starts, ray_indices, 64)
    batched_ends, _ = padded(t_ends, ray_indices, 64)
    batched_sigmas, _ = padded(sigma_fn(t_starts, t_ends, ray_indices), ray_indices, 64)
    visible = nerfacc.render_visibility_from_density(
        batched_starts, batched_ends, batched_sigmas, early_stop_eps=1e-3,
        alpha_thre=min(alpha_thre, estimator.occs.mean().item()),  # as the sampler caps it
    )[real]
    assert 0 < int(visible.sum()) < 0.5 * len(visible), "early stopping and the threshold drop samples"
    for mine, reference in zip(kept, (ray_indices[visible], t_starts[visible], t_ends[visible])):
        assert torch.equal(mine, reference)
