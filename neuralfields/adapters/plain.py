"""Adapters on any PyTorch model, with nothing but torch: LoRA and sine-LoRA from a layer spec.

    model = add_adapters(model, "sine:4", targets=["qkv", "proj"])   # wraps, freezes the base
    ...train: only the adapters' parameters have requires_grad...
    merge_adapters(model)      # W <- W + delta_W in every wrapped layer (inference speed)
    unmerge_adapters(model)    # W <- W - delta_W: the base weights again
    merge_and_unload(model)    # merged nn.Linear layers back in place of the wrappers

A matched nn.Linear (weight W: out x in) becomes an `AdaptedLinear`: y = base(x) + delta(x) *
alpha / k, where `delta` is a factorised layer of the spec's kind built through the kind
registry (`layers/spec.py: KINDS`), without bias, with U = B (out x k) and V = A^T (A: k x in):

    lowrank:K      delta_W = B A                        (LoRA)
    sine:K@OMEGA   delta_W = sin(OMEGA * B A) / g       (sine-LoRA, g = sqrt(in))

so the adapter's weight is computed by the very code of the layer kind (the sine weight function
`layers.linear.sine_weight`, the layer's forward and its no-grad weight cache). Initialisation as
in LoRA: B = 0 (the model is unchanged at the start; sin(0) = 0), A Kaiming-uniform (nn.Linear's
default, entries uniform in +-1/sqrt(in)). Defaults, and where they come from:
- omega: the sine kind's default (`SINE_DEFAULT_OMEGA`, 100) unless the spec says `sine:K@OMEGA`;
  the sine-LoRA authors' public code takes the frequency as a required argument with no default.
- g = sqrt(in_features): the authors' LoRA code (`s = sqrt(in_features)`), also our sine layers'.
- alpha = k (scaling alpha / k = 1) unless given; peft's LoraConfig defaults to lora_alpha = 8.

Targets are name patterns: a pattern matches a module whose name equals it, ends with `.PATTERN`,
or matches it as a glob (`blocks.*.attn.qkv`); `targets=None` adapts every nn.Linear (except the
out_proj of nn.MultiheadAttention, which uses its weight without calling the layer).
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Iterable

import torch
from torch import nn

from neuralfields.layers.linear import weight_matrix
from neuralfields.layers.spec import KINDS, LayerSpec


def _adapter_kinds() -> list[str]:
    return [name for name, kind in KINDS.items() if kind.takes_rank]


class AdaptedLinear(nn.Module):
    """A frozen nn.Linear plus a low-rank adapter of a registered factorised kind."""

    def __init__(self, base: nn.Linear, spec: LayerSpec | str, alpha: float | None = None, name: str = "") -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"adapters wrap nn.Linear layers, not {type(base).__name__}")
        spec = LayerSpec.parse(spec).resolved()
        kind = KINDS[spec.kind]
        if not kind.takes_rank:
            raise ValueError(f"adapters need a factorised layer kind ({', '.join(_adapter_kinds())} with a rank, "
                             f"e.g. 'sine:4'), got {str(spec)!r}")
        in_features, out_features = base.in_features, base.out_features
        if spec.rank > min(in_features, out_features):
            where = f"layer {name!r} ({in_features}->{out_features})" if name else \
                f"a {in_features}->{out_features} layer"
            raise ValueError(f"adapter rank {spec.rank} is larger than {where} allows "
                             f"(at most {min(in_features, out_features)})")
        if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"adapter alpha must be a finite number > 0, got {alpha!r}")
        self.base = base
        init = kind.inits[0] if kind.inits else None
        self.delta = kind.build(in_features, out_features, spec.rank, spec.omega, False, init).to(
            device=base.weight.device, dtype=base.weight.dtype)
        if not (hasattr(self.delta, "U") and hasattr(self.delta, "V")):
            raise ValueError(f"layer kind {spec.kind!r} has no U V^T factors and cannot be an adapter")
        self.spec = spec
        self.rank = spec.rank
        self.alpha = float(alpha) if alpha is not None else float(spec.rank)
        self.scaling = self.alpha / spec.rank
        self.merged = False
        self.reset_adapter()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @torch.no_grad()
    def reset_adapter(self) -> None:
        """LoRA's initialisation: B (= U) zero, A (= V^T) Kaiming-uniform like nn.Linear's weight."""
        self.delta.U.zero_()
        a = torch.empty(self.rank, self.in_features, device=self.delta.V.device, dtype=self.delta.V.dtype)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.delta.V.copy_(a.T)

    def delta_weight(self) -> torch.Tensor:
        """The adapter's (out, in) weight update, scaling included."""
        return weight_matrix(self.delta) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        if self.merged:
            return result
        return result + self.delta(x) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + delta_W (idempotent); forward then runs the base layer alone."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - delta_W (idempotent): the base weights again, up to rounding."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"spec={self.spec}, alpha={self.alpha:g}, merged={self.merged}"


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or fnmatchcase(name, pattern)


def _check_wrappable(model: nn.Module, name: str) -> None:
    """nn.MultiheadAttention reads its out_proj weight directly, never calling its forward."""
    parent_name, _, _ = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.MultiheadAttention):
        raise ValueError(f"cannot adapt {name!r}: nn.MultiheadAttention uses its weights without calling the "
                         f"layer, so a wrapper would be ignored (use peft, or a model with explicit nn.Linear layers)")


def add_adapters(model: nn.Module, spec: LayerSpec | str = "sine:4", targets: Iterable[str] | str | None = None,
                 alpha: float | None = None) -> nn.Module:
    """Wrap the nn.Linear layers matching `targets` in AdaptedLinear (in place) and freeze everything
    else; returns the model. One-line ValueErrors: a target that matches no nn.Linear, a rank
    above a layer's width, omega <= 0 (from the spec), a layer that already has an adapter."""
    spec = LayerSpec.parse(spec)
    if isinstance(targets, str):
        targets = [targets]
    modules = dict(model.named_modules())
    linear = [name for name, module in modules.items()
              if isinstance(module, nn.Linear) and name and not isinstance(modules.get(name.rpartition(".")[0]),
                                                                            AdaptedLinear)]
    if targets is None:  # nn.MultiheadAttention's out_proj cannot be wrapped (see _check_wrappable)
        chosen = [name for name in linear if not isinstance(modules.get(name.rpartition(".")[0]),
                                                            nn.MultiheadAttention)]
    else:
        chosen = []
        for pattern in targets:
            hits = [name for name in linear if _matches(name, pattern)]
            if not hits:
                adapted = [name for name, module in modules.items()
                           if isinstance(module, AdaptedLinear) and _matches(name, pattern)]
                others = [name for name in modules if name and _matches(name, pattern)]
                if adapted:
                    raise ValueError(f"target {pattern!r}: {adapted[0]!r} already has an adapter")
                if others:
                    raise ValueError(f"target {pattern!r} matches {others[0]!r}, a {type(modules[others[0]]).__name__}, "
                                     f"not an nn.Linear")
                shown = ", ".join(linear[:8]) + (", ..." if len(linear) > 8 else "")
                raise ValueError(f"unknown target module {pattern!r}: no nn.Linear of the model matches it "
                                 f"(its nn.Linear layers: {shown or 'none'})")
            chosen += [name for name in hits if name not in chosen]
    if not chosen:
        raise ValueError("the model has no nn.Linear layer to adapt")
    wrappers = {}
    for name in chosen:
        _check_wrappable(model, name)
        wrappers[name] = AdaptedLinear(modules[name], spec, alpha, name)  # all checked before any change
    for name, wrapper in wrappers.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, wrapper)
    model.requires_grad_(False)
    for wrapper in adapter_layers(model).values():  # also those of an earlier call
        wrapper.delta.requires_grad_(True)
    return model


def adapter_layers(model: nn.Module) -> dict[str, AdaptedLinear]:
    """The model's AdaptedLinear layers by name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, AdaptedLinear)}


def merge_adapters(model: nn.Module) -> nn.Module:
    """Merge every adapter into its base weight (idempotent)."""
    for layer in adapter_layers(model).values():
        layer.merge()
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """Take every merged adapter out of its base weight again (idempotent)."""
    for layer in adapter_layers(model).values():
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge the adapters and put the plain nn.Linear layers back (in place); returns the model."""
    for name, layer in adapter_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.base)
    return model
