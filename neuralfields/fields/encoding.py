"""Frequency (positional) encoding: [x, sin(2^k x), cos(2^k x)] for k < num_freqs (NeRF)."""

from __future__ import annotations

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    def __init__(self, in_dim: int, num_freqs: int, include_input: bool = True) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_freqs = num_freqs
        self.include_input = include_input
        self.register_buffer("frequencies", 2.0 ** torch.arange(num_freqs, dtype=torch.float32), persistent=False)
        self.out_dim = in_dim * (2 * num_freqs + int(include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x[..., None, :] * self.frequencies[:, None]).flatten(-2)
        features = [torch.sin(scaled), torch.cos(scaled)]
        if self.include_input:
            features.insert(0, x)
        return torch.cat(features, dim=-1)
