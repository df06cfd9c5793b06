"""The CUDA paths end to end: nerfacc's OccGridEstimator and packed renderer against the dense
reference, NeRF training in fp16 autocast through nerfacc with the fused sine layers, and
occupancy training on the GPU. Every test here is marked `cuda` and skips without a GPU;
benchmarks/gpu/check.py runs them (`pytest -m cuda`). The kernels' own CUDA tests are in
test_fused.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neuralfields.config import defaults, overlay
from neuralfields.rendering.cameras import orbit_camtoworlds
from neuralfields.rendering.render import RenderSettings, render_image
from neuralfields.rendering.sampling import create_sampling_path
from test_rendering import dense_reference_image

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


class Blobs(nn.Module):
    """Two soft balls of density with position-dependent colour (test_rendering's field, with its
    constants as buffers so that it moves to the GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.tensor([[0.3, 0.0, 0.1], [-0.5, 0.2, -0.2]]), requires_grad=False)
        self.register_buffer("heights", torch.tensor([40.0, 15.0]))
        self.register_buffer("radii", torch.tensor([0.25, 0.18]))

    def query_density(self, points):
        d2 = ((points[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return (self.heights * torch.exp(-d2 / (2 * self.radii**2))).sum(-1)

    def forward(self, points, directions):
        return torch.sigmoid(3 * points + directions), self.query_density(points)


@pytest.mark.parametrize("view", [0, 3])
def test_nerfacc_grid_and_renderer_match_dense_reference(view):
    """nerfacc's CUDA estimator + nerfacc.rendering render what the dense CPU quadrature does (the
    CPU twins pass the same test in test_rendering.py), and what the CPU twins render."""
    import nerfacc

    settings = RenderSettings(near=2.0, far=6.0, render_step_size=4e-3)
    images = {}
    for device in ("cuda", "cpu"):
        torch.manual_seed(0)
        field = Blobs().to(device)
        path = create_sampling_path(torch.device(device), "grid", grid_resolution=48)
        path.estimator.train()
        path.estimator.update_every_n_steps(
            0, lambda x: field.query_density(x)[:, None] * settings.render_step_size, occ_thre=1e-6)
        path.estimator.eval()
        if device == "cuda":
            assert isinstance(path.estimator, nerfacc.OccGridEstimator) and path.name.startswith("nerfacc")
            occupied = path.estimator.binaries.float().mean().item()
            assert 0.005 < occupied < 0.5, occupied
        c2w = orbit_camtoworlds(6, radius=4.0, elevation_deg=20.0)[view]
        images[device] = render_image(field, path, c2w, 24, 24, 30.0, settings, chunk=200)["rgb"]
    reference = dense_reference_image(Blobs(), orbit_camtoworlds(6, radius=4.0, elevation_deg=20.0)[view],
                                      24, 24, 30.0, 2.0, 6.0)
    assert (reference - 1).abs().max() > 0.3, "the view must actually see the blobs"
    assert (images["cuda"] - reference).abs().max() < 2e-3
    assert (images["cuda"] - reference).abs().mean() < 2e-4
    assert (images["cuda"] - images["cpu"]).abs().max() < 2e-3


def test_nerf_trains_on_cuda_with_fp16_autocast_nerfacc_and_fused_layers(tiny_scene, tmp_path, capsys):
    """A short NeRF run on the GPU: fp16 autocast, nerfacc's sampler and renderer, the fused sine
    layers (when Triton imports); the loss stays finite and the run evaluates."""
    from neuralfields.layers.fused import fused_available
    from neuralfields.training.nerf import NerfConfig, train_nerf

    values = {
        "spec": "sine:1@30", "num_layers": 3, "width": 32, "skip_layer": 2, "color_width": 16, "xyz_freqs": 4,
        "dir_freqs": 2, "grid_resolution": 16, "grid_warmup_steps": 32, "render_step_size": 0.05,
        "target_samples": 4096, "init_rays": 256, "max_rays": 1024, "lr": 5e-3, "steps": 40,
        "mixed_precision": True, "device": "cuda", "val_every": 10**6, "checkpoint_every": 20, "test_views": 2,
        "eval_chunk": 1024, "video_frames": 0, "scene": str(tiny_scene), "output_root": str(tmp_path / "out"),
    }
    _, metrics = train_nerf(overlay(defaults(NerfConfig), values, "test"), progress=False)
    printed = capsys.readouterr().out
    assert "precision: float16 mixed" in printed and "sampling: nerfacc OccGridEstimator" in printed
    if fused_available(torch.zeros(1, device="cuda")):
        assert "sine layers: fused Triton kernels" in printed
    assert metrics["steps"] == 40 and math.isfinite(metrics["test_psnr"]) and metrics["test_psnr"] > 5.0
    assert metrics["precision"] == "float16 mixed" and metrics["sampling"].startswith("nerfacc")


def test_occupancy_trains_on_cuda(tiny_occupancy_config, tmp_path, capsys):
    """A short occupancy run on a sphere on the GPU (fused sine layers when Triton imports)."""
    from neuralfields.training.occupancy import train_occupancy

    config = tiny_occupancy_config(device="cuda")
    _, metrics = train_occupancy(config, run_dir=tmp_path / "run", progress=False)
    assert "device: cuda" in capsys.readouterr().out
    assert metrics["steps"] == 200 and metrics["iou_grid"] > 0.5, metrics["iou_grid"]
