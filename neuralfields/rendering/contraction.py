"""Scene contraction: where the field is asked about a point.

Unbounded scenes (a circling capture sees the object and the room behind it) are sampled in world
space by a multi-level occupancy grid whose boxes double in size; the field, though, would see
coordinates up to the largest box, which a positional encoding aliases (its lowest frequency has a
period of 2 pi). mip-NeRF 360's contraction (Barron et al., CVPR 2022, eq. 10) maps all of space into
a ball of radius 2, leaving the unit ball (where a spherified capture's object lives) untouched:

    contract(x) = x                              if |x| <= 1
                  (2 - 1 / |x|) * x / |x|        otherwise

which is also what nerfacc's own unbounded examples give their field (there with an L-inf norm for a
hash grid; the L2 ball suits a positional encoding). `contract(points, "none")` is the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor

CONTRACTIONS = ("none", "sphere")


def contract(points: Tensor, kind: str = "none") -> Tensor:
    """Points (..., 3) as the field sees them: unchanged ("none"), or contracted into the ball of
    radius 2 ("sphere", mip-NeRF 360)."""
    if kind == "none":
        return points
    if kind != "sphere":
        raise ValueError(f"unknown contraction {kind!r}: expected one of {', '.join(CONTRACTIONS)}")
    norm = points.norm(dim=-1, keepdim=True)
    safe = norm.clamp_min(1.0)  # the outer branch only ever sees |x| > 1
    return torch.where(norm <= 1.0, points, (2.0 - 1.0 / safe) * points / safe)
