"""Spectrum diagnostics: singular values and numerical rank of a layer's weight matrix."""

from __future__ import annotations

import torch


def singular_values(weight: torch.Tensor) -> torch.Tensor:
    """Singular values of W in float64, largest first."""
    return torch.linalg.svdvals(weight.detach().to(torch.float64))


def numerical_rank(weight: torch.Tensor, rtol: float | None = None) -> int:
    """Number of singular values above rtol * s_max.

    The default tolerance is LAPACK's: max(out, in) * float64 eps, the rank of W as computed in
    float64. Pass e.g. rtol=1e-3 for the rank that matters at float precision.
    """
    values = singular_values(weight)
    if rtol is None:
        rtol = max(weight.shape) * torch.finfo(torch.float64).eps
    return int((values > rtol * values[0]).sum())
