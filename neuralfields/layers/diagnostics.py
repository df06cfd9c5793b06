"""Spectrum diagnostics: singular values and numerical rank of a layer's weight matrix."""

from __future__ import annotations

import torch
from torch import nn

from neuralfields.layers.linear import LowRankLinear, SineLowRankLinear


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


def normalised_spectra(size: int = 256, rank: int = 1, omegas=(1.0, 30.0, 100.0, 300.0, 800.0), seed: int = 0) -> dict[str, torch.Tensor]:
    """Singular values / s_max of U V^T, sin(omega U V^T) for each omega, and a Kaiming dense W.

    All matrices share one U, V draw (the layers' own initialisation), so the curves differ only
    by the sine and omega: the reference paper's figure 3 idea.
    """
    torch.manual_seed(seed)
    lowrank = LowRankLinear(size, size, rank)
    spectra = {f"U V^T (rank {rank})": singular_values(lowrank.weight_matrix())}
    for omega in omegas:
        sine = SineLowRankLinear(size, size, rank, omega)
        sine.load_state_dict(lowrank.state_dict())
        spectra[f"sin({omega:g} U V^T)"] = singular_values(sine.weight_matrix())
    spectra["dense (Kaiming)"] = singular_values(nn.Linear(size, size).weight)
    return {label: values / values[0] for label, values in spectra.items()}
