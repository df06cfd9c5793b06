"""One layer spec for every network: `dense`, `lowrank:K`, `sine:K`, `sine:K@OMEGA`.

Networks receive a LayerSpec and call `spec.build(in_features, out_features)`; nothing else in the
code base knows which kind of linear layer it holds.

Policy for layers where factorising does not pay: when a rank-K factorisation would store at least
as many weights as the dense matrix (K * (in + out) >= in * out, e.g. a 256->1 head, or any K >=
min(in, out)), `build` returns a plain nn.Linear. `parameter_report` shows the result per layer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from torch import nn

from neuralfields.layers.linear import LowRankLinear, SineLowRankLinear

KINDS = ("dense", "lowrank", "sine")
DEFAULT_OMEGA = 100.0
"""Omega for a sine spec that names none and gets no task default (the reference's occupancy value)."""

_SPEC_PATTERN = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<rank>[^@]*))?(?:@(?P<omega>.*))?$")
_ACCEPTED = "expected 'dense', 'lowrank:K', 'sine:K' or 'sine:K@OMEGA' with K an integer >= 1 and OMEGA a number > 0"


@dataclass(frozen=True)
class LayerSpec:
    """Which linear layer to build: kind, rank K (factorised kinds) and omega (sine)."""

    kind: str
    rank: int | None = None
    omega: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; {_ACCEPTED}")
        if self.kind == "dense":
            if self.rank is not None or self.omega is not None:
                raise ValueError(f"a dense layer takes no rank or omega; {_ACCEPTED}")
            return
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ValueError(f"{self.kind} layers need a rank K >= 1, got {self.rank!r}; {_ACCEPTED}")
        if self.omega is not None:
            if self.kind != "sine":
                raise ValueError(f"omega applies only to sine layers, not {self.kind!r}; {_ACCEPTED}")
            if not math.isfinite(self.omega) or self.omega <= 0:
                raise ValueError(f"omega must be a finite number > 0, got {self.omega!r}; {_ACCEPTED}")

    @classmethod
    def parse(cls, text: str | LayerSpec) -> LayerSpec:
        """Parse `dense`, `lowrank:K`, `sine:K` or `sine:K@OMEGA` (a LayerSpec passes through)."""
        if isinstance(text, LayerSpec):
            return text
        match = _SPEC_PATTERN.match(text.strip().lower())
        if match is None:
            raise ValueError(f"malformed layer spec {text!r}; {_ACCEPTED}")
        kind, rank_text, omega_text = match.group("kind", "rank", "omega")
        if kind == "dense":
            if rank_text is not None or omega_text is not None:
                raise ValueError(f"malformed layer spec {text!r}: dense takes no rank or omega; {_ACCEPTED}")
            return cls("dense")
        if rank_text is None:
            raise ValueError(f"malformed layer spec {text!r}: missing ':K' rank; {_ACCEPTED}")
        try:
            rank = int(rank_text)
        except ValueError:
            raise ValueError(f"malformed layer spec {text!r}: rank {rank_text!r} is not an integer; {_ACCEPTED}") from None
        omega = None
        if omega_text is not None:
            try:
                omega = float(omega_text)
            except ValueError:
                raise ValueError(f"malformed layer spec {text!r}: omega {omega_text!r} is not a number; {_ACCEPTED}") from None
        return cls(kind, rank, omega)

    def __str__(self) -> str:
        if self.kind == "dense":
            return "dense"
        text = f"{self.kind}:{self.rank}"
        return f"{text}@{self.omega:g}" if self.omega is not None else text

    @property
    def label(self) -> str:
        """Folder-friendly name, e.g. `sine-k1`."""
        return "dense" if self.kind == "dense" else f"{self.kind}-k{self.rank}"

    def with_default_omega(self, omega: float) -> LayerSpec:
        """This spec with `omega` filled in when it is a sine spec that names none."""
        if self.kind == "sine" and self.omega is None:
            return replace(self, omega=float(omega))
        return self

    def check_rank(self, width: int) -> None:
        """Refuse a rank above the width of the layers it will be used for."""
        if self.rank is not None and self.rank > width:
            raise ValueError(f"rank {self.rank} is larger than the layer width {width} allows")

    def factorises(self, in_features: int, out_features: int) -> bool:
        """True when this spec builds a factorised layer (smaller than dense) for that shape."""
        return self.kind != "dense" and self.rank * (in_features + out_features) < in_features * out_features

    def build(self, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        """The linear layer this spec describes (nn.Linear where factorising does not pay)."""
        if not self.factorises(in_features, out_features):
            return nn.Linear(in_features, out_features, bias=bias)
        if self.kind == "lowrank":
            return LowRankLinear(in_features, out_features, self.rank, bias=bias)
        omega = self.omega if self.omega is not None else DEFAULT_OMEGA
        return SineLowRankLinear(in_features, out_features, self.rank, omega, bias=bias)
