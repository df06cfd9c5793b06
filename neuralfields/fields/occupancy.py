"""Occupancy field: points in the padded unit cube -> inside logit.

Reference set-up (the default): raw xyz into a dense input layer, `num_layers - 1` hidden
layers built from the layer spec (width 256), a dense output logit, Gaussian activations
(sigma 0.1). The alternative is ReLU with a positional encoding in front (`pe_freqs > 0`).
"""

from __future__ import annotations

import torch
from torch import nn

from neuralfields.fields.encoding import PositionalEncoding
from neuralfields.fields.mlp import MLP
from neuralfields.layers.spec import LayerSpec

DENSE = LayerSpec("dense")


class OccupancyField(nn.Module):
    def __init__(
        self,
        spec: LayerSpec | str,
        hidden_dim: int = 256,
        num_layers: int = 3,
        activation: str = "gaussian:0.1",
        pe_freqs: int = 0,
    ) -> None:
        super().__init__()
        self.encoding = PositionalEncoding(3, pe_freqs) if pe_freqs > 0 else nn.Identity()
        in_dim = self.encoding.out_dim if pe_freqs > 0 else 3
        self.mlp = MLP(
            in_dim, hidden_dim, num_layers, 1, spec, activation=activation,
            input_spec=DENSE, output_spec=DENSE,
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) points -> (...) logits; inside where the logit is above 0."""
        return self.mlp(self.encoding(points)).squeeze(-1)
