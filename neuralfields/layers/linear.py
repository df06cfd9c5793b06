"""Low-rank and sine-activated low-rank linear layers, drop-in replacements for nn.Linear.

LowRankLinear:      W = U @ V.T
SineLowRankLinear:  W = sin(omega * U @ V.T) / g,   g = sqrt(in_features) by default

U is (out_features, rank), V is (in_features, rank). Both store rank * (in + out) weights plus
the bias, but the sine makes W's rank far higher than `rank` for large omega.

Initialisation: the reference one (Kaiming-uniform U and V, as in the paper's code) gives
U V^T entries of variance 1 / (9 rank), far above nn.Linear's 1 / (3 in); LowRankLinear also
offers init="matched", which scales U and V so that U V^T has nn.Linear's per-entry variance
(a fair plain low-rank baseline: with the reference init a rank-1 network can fail to train).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_weight(left: torch.Tensor, right: torch.Tensor, omega: float, scale: float) -> torch.Tensor:
    """sin(omega * left @ right) / scale: the sine low-rank weight, shared by SineLowRankLinear
    (left = U, right = V^T) and the sine-LoRA adapters (left = B, right = A). Computed in the
    factors' precision, also under autocast: omega * left @ right is a phase of up to ~omega
    radians, and rounding it to bf16/fp16 (as autocast would) scrambles the sine."""
    with torch.autocast(left.device.type, enabled=False):
        return torch.sin(omega * (left @ right)) / scale


def _check_shape(in_features: int, out_features: int, rank: int) -> None:
    if in_features < 1 or out_features < 1:
        raise ValueError(f"in_features and out_features must be >= 1, got {in_features} and {out_features}")
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
    if rank > min(in_features, out_features):
        raise ValueError(
            f"rank {rank} is larger than a {in_features}->{out_features} layer allows "
            f"(at most {min(in_features, out_features)})"
        )


class _FactorisedLinear(nn.Module):
    """Shared parameters and initialisation of the factorised layers (reference initialisation)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        _check_shape(in_features, out_features, rank)
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.U = nn.Parameter(torch.empty(out_features, rank))
        self.V = nn.Parameter(torch.empty(in_features, rank))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.U, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.V, a=math.sqrt(5))
        self._reset_bias()

    def _reset_bias(self) -> None:
        """nn.Linear's bias initialisation."""
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def weight_matrix(self) -> torch.Tensor:
        raise NotImplementedError

    def dense_parameter_count(self) -> int:
        """Parameters of an nn.Linear of the same shape."""
        return self.in_features * self.out_features + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.bias is not None}"


class LowRankLinear(_FactorisedLinear):
    """y = x @ (U V^T)^T + b, evaluated as two thin matmuls (never materialises W).

    init="reference" (Kaiming-uniform U and V) or "matched": U and V uniform in +-b with
    b = sqrt(3) (3 in rank)^(-1/4), so each entry of U V^T (a sum of `rank` products) has variance
    rank * (b^2 / 3)^2 = 1 / (3 in), that of nn.Linear's default weight (uniform in +-1/sqrt(in)).
    """

    INITS = ("reference", "matched")

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 init: str = "reference") -> None:
        if init not in self.INITS:
            raise ValueError(f"unknown low-rank initialisation {init!r}; expected {' or '.join(self.INITS)}")
        self.init = init  # read by reset_parameters, which the base __init__ calls
        super().__init__(in_features, out_features, rank, bias)

    def reset_parameters(self) -> None:
        if self.init == "reference":
            super().reset_parameters()
            return
        bound = math.sqrt(3.0) * (3.0 * self.in_features * self.rank) ** -0.25
        nn.init.uniform_(self.U, -bound, bound)
        nn.init.uniform_(self.V, -bound, bound)
        self._reset_bias()

    def weight_matrix(self) -> torch.Tensor:
        return self.U @ self.V.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.V.T), self.U, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, init={self.init}"


class SineLowRankLinear(_FactorisedLinear):
    """y = x @ W^T + b with W = sin(omega * U V^T) / scale.

    Without autograd (eval, `torch.no_grad`, `torch.inference_mode`) the materialised W is cached
    and rebuilt only when U or V change (tracked through their version counters), so repeated
    rendering does not rebuild W on every call.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        omega: float,
        bias: bool = True,
        scale: float | None = None,
    ) -> None:
        if not math.isfinite(omega) or omega <= 0:
            raise ValueError(f"omega must be a finite number > 0, got {omega!r}")
        super().__init__(in_features, out_features, rank, bias)
        self.omega = float(omega)
        self.scale = float(scale) if scale is not None else math.sqrt(in_features)
        self._cache_key: tuple | None = None
        self._cached_weight: torch.Tensor | None = None

    def weight_matrix(self) -> torch.Tensor:
        """W in the parameters' precision, also under autocast: omega * U V^T is a phase of up to
        ~omega radians, and rounding it to bf16/fp16 (as autocast would) scrambles the sine."""
        return sine_weight(self.U, self.V.T, self.omega, self.scale)

    def _weight_without_grad(self) -> torch.Tensor:
        key = (
            self.U.data_ptr(), self.U._version, self.V.data_ptr(), self.V._version,
            self.U.dtype, self.U.device, self.omega, self.scale,
        )
        if key != self._cache_key:
            self._cached_weight = self.weight_matrix()
            self._cache_key = key
        return self._cached_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training on CUDA: fused Triton kernels, W never in memory (layers/fused.py)
            from neuralfields.layers.fused import fused_available, sine_lowrank_linear

            if fused_available(x, self.U):
                return sine_lowrank_linear(x, self.U, self.V, self.bias, self.omega, self.scale)
        weight = self.weight_matrix() if torch.is_grad_enabled() else self._weight_without_grad()
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, omega={self.omega:g}, scale={self.scale:g}"


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """The (out, in) weight matrix of any supported linear layer: nn.Linear, or a layer with a
    `weight_matrix()` method (the factorised and the adaptive-rank ones)."""
    if isinstance(layer, nn.Linear):
        return layer.weight
    if callable(getattr(layer, "weight_matrix", None)):
        return layer.weight_matrix()
    raise TypeError(f"not a linear layer: {type(layer).__name__}")
