"""An MLP whose linear layers all come from a LayerSpec."""

from __future__ import annotations

import torch
from torch import nn

from neuralfields.layers.spec import LayerSpec


class GaussianActivation(nn.Module):
    """exp(-x^2 / (2 sigma^2)), the activation of the reference occupancy networks."""

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * (x / self.sigma) ** 2)


def make_activation(name: str) -> nn.Module:
    """`relu`, `softplus`, `gaussian` or `gaussian:SIGMA`."""
    kind, _, argument = name.partition(":")
    if kind == "relu" and not argument:
        return nn.ReLU()
    if kind == "softplus" and not argument:
        return nn.Softplus()
    if kind == "gaussian":
        return GaussianActivation(float(argument) if argument else 0.1)
    raise ValueError(f"unknown activation {name!r}; expected 'relu', 'softplus' or 'gaussian[:SIGMA]'")


class MLP(nn.Module):
    """`num_layers` hidden layers of width `hidden_dim`, then an optional output layer.

    A hidden layer whose index is in `skips` receives the MLP input concatenated to its input
    (NeRF's skip connection: the reference's "skip at layer 4" is `skips=(5,)` here).
    `input_spec` / `output_spec` override `spec` for the first hidden / the output layer.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        num_layers: int,
        out_dim: int | None,
        spec: LayerSpec | str,
        activation: str = "relu",
        skips: tuple[int, ...] = (),
        input_spec: LayerSpec | str | None = None,
        output_spec: LayerSpec | str | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"an MLP needs at least one hidden layer, got {num_layers}")
        if any(not 0 < index < num_layers for index in skips):
            raise ValueError(f"skip indices must lie in 1..{num_layers - 1}, got {skips}")
        spec = LayerSpec.parse(spec)
        spec.check_rank(hidden_dim)
        first = LayerSpec.parse(input_spec) if input_spec is not None else spec
        last = LayerSpec.parse(output_spec) if output_spec is not None else spec
        self.skips = tuple(skips)
        widths_in = [in_dim] + [hidden_dim + (in_dim if i in self.skips else 0) for i in range(1, num_layers)]
        self.hidden = nn.ModuleList(
            (first if i == 0 else spec).build(width, hidden_dim) for i, width in enumerate(widths_in)
        )
        self.activation = make_activation(activation)
        self.output = last.build(hidden_dim, out_dim) if out_dim is not None else None
        self.out_features = out_dim if out_dim is not None else hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for index, layer in enumerate(self.hidden):
            if index in self.skips:
                h = torch.cat([h, x], dim=-1)
            h = self.activation(layer(h))
        return self.output(h) if self.output is not None else h
