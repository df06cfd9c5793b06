"""Image quality metrics in torch: PSNR and SSIM for images in [0, 1] of shape (H, W, C)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error, for a peak of 1."""
    return -10.0 * math.log10(max(mse, 1e-10))


def psnr(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for a peak of 1."""
    mse = torch.mean((image.float() - target.float()) ** 2)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def ssim(image: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1=0.01,
    K2=0.03, computed per channel over the valid region and averaged (the usual NeRF protocol)."""
    x = image.float().permute(2, 0, 1)[:, None]  # (C,1,H,W)
    y = target.float().permute(2, 0, 1)[:, None]
    kernel_1d = _gaussian_window(window, sigma).to(x.device)
    kernel = (kernel_1d[:, None] * kernel_1d[None, :])[None, None]

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean()
