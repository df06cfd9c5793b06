"""One layer spec for every network (`dense`, `lowrank:K`, `lowrank:K,init=matched`, `sine:K`,
`sine:K@OMEGA`) and the registry of layer kinds behind it.

Networks receive a LayerSpec and call `spec.build(in_features, out_features)`; nothing else in the
code base knows which kind of linear layer it holds. A kind is registered once in `KINDS` (its
name, whether it takes a rank, the name and default of its `@` parameter, the initialisations it
offers, its builder); the parser, the CLI's `--kind` choices and the error messages all read that
table, so adding a kind (adaptive rank, adapters) touches this file and the layer's own module
only. Parameter counting needs no entry: factorised layers report their own
`dense_parameter_count()`.

Initialisations: a kind may offer named ones (`inits`, the first being its default); a spec names
another with the suffix `,init=NAME` (e.g. `lowrank:4,init=matched`, U V^T with nn.Linear's
per-entry variance). The default is never written, so `lowrank:4,init=reference` is `lowrank:4`.

Policy for layers where factorising does not pay: when a rank-K factorisation would store at least
as many weights as the dense matrix (K * (in + out) >= in * out, e.g. a 256->1 head, or any K >=
min(in, out)), `build` returns a plain nn.Linear. `parameter_report` shows the result per layer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable

from torch import nn

from neuralfields.layers.linear import LowRankLinear, SineLowRankLinear
from neuralfields.layers.oialr import DEFAULT_BETA, SINE_OMEGA, OIALRLinear


@dataclass(frozen=True)
class LayerKind:
    """A registered kind of linear layer: `build(in, out, rank, param, bias, init)` makes one
    (`init`: one of the kind's `inits`, or None for kinds that offer no choice)."""

    name: str
    takes_rank: bool
    build: Callable[[int, int, int | None, float | None, bool], nn.Module]
    param: str | None = None
    """Name of the kind's `@VALUE` suffix (sine: omega), None when the kind takes none."""
    default_param: float | None = None
    param_below: float | None = None
    """An upper bound (exclusive) on the `@` parameter, e.g. 1 for OIALR's beta; None: none."""
    syntax: tuple[str, ...] = ()
    """How its specs are written, for error messages."""
    inits: tuple[str, ...] = ()
    """Named initialisations the kind offers, its default first (empty: no choice)."""
    adaptive: bool = False
    """The layer finds its own rank while it trains (the spec's K is only its minimum), so its
    size is known at the end of training, not when it is built."""

    @property
    def fixed_rank(self) -> bool:
        """Whether the spec's rank K sets the layer's size when it is built (not adaptive)."""
        return self.takes_rank and not self.adaptive

    def param_problem(self, value: float) -> str | None:
        """Why `value` is not a valid `@` parameter of this kind (None: it is)."""
        if self.param is None:
            return f"'@' (omega or beta) does not apply to {self.name!r} layers"
        if not math.isfinite(value) or value <= 0:
            return f"{self.param} must be a finite number > 0, got {value!r}"
        if self.param_below is not None and not value < self.param_below:
            return f"{self.param} must lie in (0, {self.param_below:g}), got {value!r}"
        return None


SINE_DEFAULT_OMEGA = 100.0
"""Omega of sine layers when a spec names none (the reference NeRF and occupancy networks' value;
both tasks use it, and a run's config.yaml records the omega it resolved to)."""

KINDS: dict[str, LayerKind] = {
    kind.name: kind
    for kind in (
        LayerKind("dense", False, lambda i, o, rank, param, bias, init: nn.Linear(i, o, bias=bias), syntax=("'dense'",)),
        LayerKind("lowrank", True,
                  lambda i, o, rank, param, bias, init: LowRankLinear(i, o, rank, bias=bias, init=init),
                  syntax=("'lowrank:K'",), inits=LowRankLinear.INITS),
        LayerKind("sine", True, lambda i, o, rank, param, bias, init: SineLowRankLinear(i, o, rank, param, bias=bias),
                  param="omega", default_param=SINE_DEFAULT_OMEGA, syntax=("'sine:K'", "'sine:K@OMEGA'")),
        # Adaptive rank (OIALR, layers/oialr.py): K is the minimum rank, BETA the singular-value cut-off.
        LayerKind("oialr", True, lambda i, o, rank, param, bias, init: OIALRLinear(i, o, param, rank, bias=bias),
                  param="beta", default_param=DEFAULT_BETA, param_below=1.0, syntax=("'oialr:K'", "'oialr:K@BETA'"),
                  adaptive=True),
        LayerKind("oialrsine", True,
                  lambda i, o, rank, param, bias, init: OIALRLinear(i, o, param, rank, bias=bias, omega=SINE_OMEGA),
                  param="beta", default_param=DEFAULT_BETA, param_below=1.0,
                  syntax=("'oialrsine:K'", "'oialrsine:K@BETA'"), adaptive=True),
    )
}

_SPEC_PATTERN = re.compile(
    r"^(?P<kind>[a-z]+)(?::(?P<rank>[^@,]*))?(?:@(?P<omega>[^,]*))?(?:,init=(?P<init>[a-z]*))?$")


def _accepted() -> str:
    forms = [form for kind in KINDS.values() for form in kind.syntax]
    inits = "; ".join(f"{kind.name}: {', '.join(kind.inits)}" for kind in KINDS.values() if kind.inits)
    return (f"expected {', '.join(forms[:-1])} or {forms[-1]} with K an integer >= 1, OMEGA a number > 0 and BETA in (0, 1), "
            f"optionally followed by ',init=NAME' ({inits})")


@dataclass(frozen=True)
class LayerSpec:
    """Which linear layer to build: kind, rank K (factorised kinds), omega (the `@` parameter) and
    a named initialisation (None: the kind's default, to which an explicit default is normalised)."""

    kind: str
    rank: int | None = None
    omega: float | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        accepted = _accepted()
        kind = KINDS.get(self.kind)
        if kind is None:
            raise ValueError(f"unknown layer kind {self.kind!r}; {accepted}")
        if self.init is not None:
            if self.init not in kind.inits:
                offered = f"one of {', '.join(kind.inits)}" if kind.inits else "none"
                raise ValueError(f"unknown initialisation {self.init!r} for {self.kind} layers (offered: {offered}); "
                                 f"{accepted}")
            if self.init == kind.inits[0]:
                object.__setattr__(self, "init", None)  # the default is never spelled out
        if not kind.takes_rank:
            if self.rank is not None or self.omega is not None:
                raise ValueError(f"a {self.kind} layer takes no rank or omega; {accepted}")
            return
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ValueError(f"{self.kind} layers need a rank K >= 1, got {self.rank!r}; {accepted}")
        problem = kind.param_problem(self.omega) if self.omega is not None else None
        if problem:
            raise ValueError(f"{problem}; {accepted}")

    @classmethod
    def parse(cls, text: str | LayerSpec) -> LayerSpec:
        """Parse `kind`, `kind:K` or `kind:K@VALUE`, each optionally with `,init=NAME` (a LayerSpec
        passes through)."""
        if isinstance(text, LayerSpec):
            return text
        accepted = _accepted()
        match = _SPEC_PATTERN.match(str(text).strip().lower())
        if match is None:
            raise ValueError(f"malformed layer spec {text!r}; {accepted}")
        name, rank_text, omega_text, init = match.group("kind", "rank", "omega", "init")
        kind = KINDS.get(name)
        if kind is not None and not kind.takes_rank:
            if rank_text is not None or omega_text is not None:
                raise ValueError(f"malformed layer spec {text!r}: {name} takes no rank or omega; {accepted}")
            return cls(name, init=init)
        if kind is not None and rank_text is None:
            raise ValueError(f"malformed layer spec {text!r}: missing ':K' rank; {accepted}")
        rank = None
        if rank_text is not None:
            try:
                rank = int(rank_text)
            except ValueError:
                raise ValueError(
                    f"malformed layer spec {text!r}: rank {rank_text!r} is not an integer; {accepted}") from None
        omega = None
        if omega_text is not None:
            try:
                omega = float(omega_text)
            except ValueError:
                raise ValueError(
                    f"malformed layer spec {text!r}: omega {omega_text!r} is not a number; {accepted}") from None
        return cls(name, rank, omega, init)

    def __str__(self) -> str:
        text = f"{self.kind}:{self.rank}" if KINDS[self.kind].takes_rank else self.kind
        text += f"@{self.omega:g}" if self.omega is not None else ""
        return text + (f",init={self.init}" if self.init is not None else "")

    @property
    def label(self) -> str:
        """Folder-friendly name, e.g. `sine-k1` or `lowrank-k4-matched`."""
        text = f"{self.kind}-k{self.rank}" if KINDS[self.kind].takes_rank else self.kind
        return text + (f"-{self.init}" if self.init is not None else "")

    def resolved(self, default_omega: float | None = None) -> LayerSpec:
        """This spec with its `@` parameter filled in (default_omega, else the kind's default)
        when the kind takes one and the spec names none, so that a saved config is explicit."""
        kind = KINDS[self.kind]
        if kind.param is None or self.omega is not None:
            return self
        return replace(self, omega=float(default_omega if default_omega is not None else kind.default_param))

    def check_rank(self, width: int) -> None:
        """Refuse a rank above the width of the layers it will be used for."""
        if self.rank is not None and self.rank > width:
            raise ValueError(f"rank {self.rank} is larger than the layer width {width} allows")

    def factorises(self, in_features: int, out_features: int) -> bool:
        """True when this spec builds a factorised layer (smaller than dense) for that shape."""
        return self.rank is not None and self.rank * (in_features + out_features) < in_features * out_features

    def build(self, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        """The linear layer this spec describes (nn.Linear where factorising does not pay)."""
        if not self.factorises(in_features, out_features):
            return nn.Linear(in_features, out_features, bias=bias)
        spec, kind = self.resolved(), KINDS[self.kind]
        init = spec.init or (kind.inits[0] if kind.inits else None)
        return kind.build(in_features, out_features, spec.rank, spec.omega, bias, init)
