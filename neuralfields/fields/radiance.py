"""The NeRF radiance field: density from position, colour from position and view direction.

Reference architecture (Mildenhall et al. 2020): positional encoding (10 frequencies for xyz, 4 for
the direction), 8 hidden layers of width 256 with the input re-injected at the 5th layer (the
reference's "skip at layer 4"), a density head, a 256-wide feature layer and a 128-wide
view-dependent colour branch. Every linear layer comes from one LayerSpec (`spec.build` falls
back to nn.Linear only where a factorised layer would be larger, e.g. the 256->1 density head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralfields.fields.encoding import PositionalEncoding
from neuralfields.fields.mlp import MLP
from neuralfields.layers.spec import LayerSpec

# Six axis directions; query_color averages the colour seen from them (see its docstring).
_AXIS_DIRECTIONS = torch.tensor(
    [[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
)


class RadianceField(nn.Module):
    """sigma(x) >= 0 and rgb(x, d) in [0, 1]; `forward(points, directions) -> (rgb, sigma)`."""

    def __init__(
        self,
        spec: LayerSpec | str,
        num_layers: int = 8,
        width: int = 256,
        skip_layer: int = 5,
        color_width: int = 128,
        xyz_freqs: int = 10,
        dir_freqs: int = 4,
    ) -> None:
        super().__init__()
        spec = LayerSpec.parse(spec)
        spec.check_rank(color_width)
        self.spec = spec
        self.xyz_encoding = PositionalEncoding(3, xyz_freqs)
        self.dir_encoding = PositionalEncoding(3, dir_freqs)
        skips = (skip_layer,) if 0 < skip_layer < num_layers else ()
        self.trunk = MLP(self.xyz_encoding.out_dim, width, num_layers, None, spec, skips=skips)
        self.density_head = spec.build(width, 1)
        self.feature = spec.build(width, width)
        self.color_branch = MLP(width + self.dir_encoding.out_dim, color_width, 1, 3, spec)

    def _trunk(self, points: Tensor) -> Tensor:
        return self.trunk(self.xyz_encoding(points))

    @staticmethod
    def _density(raw: Tensor) -> Tensor:
        # softplus(raw - 1): smooth, never "dead" like ReLU, near-empty space at initialisation
        # (as in mip-NeRF), which lets the occupancy grid start from a clean state.
        # Float32 from here on (also under autocast): transmittance products need the precision.
        return F.softplus(raw[..., 0].float() - 1.0)

    def query_density(self, points: Tensor) -> Tensor:
        """Density sigma (N,) at points (N,3)."""
        return self._density(self.density_head(self._trunk(points)))

    def _color(self, features: Tensor, directions: Tensor) -> Tensor:
        encoded = self.dir_encoding(directions)
        features = self.feature(features)
        return torch.sigmoid(self.color_branch(torch.cat([features, encoded.to(features.dtype)], dim=-1)).float())

    def forward(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Colour (N,3) seen along unit directions (N,3) and density (N,) at points (N,3)."""
        features = self._trunk(points)
        return self._color(features, directions), self._density(self.density_head(features))

    def query_color(self, points: Tensor) -> Tensor:
        """A view-independent colour (N,3) for points (N,3), e.g. for mesh vertex colours.

        The field's colour depends on the view direction; we average the colours seen from the six
        axis directions (+-x, +-y, +-z), which cancels most view-dependent highlights and favours no
        particular camera.
        """
        features = self._trunk(points)
        directions = _AXIS_DIRECTIONS.to(points)
        colors = [self._color(features, d.expand_as(points)) for d in directions]
        return torch.stack(colors).mean(dim=0)
