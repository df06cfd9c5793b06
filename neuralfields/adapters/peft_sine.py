"""Sine-LoRA and sine-DoRA as a LoRA variant of Hugging Face PEFT, for an unmodified peft release.

    from peft import get_peft_model
    from neuralfields.adapters import SineLoraConfig, load_sine_lora

    config = SineLoraConfig(r=4, lora_alpha=4, target_modules=["query", "value"], sine_omega=100)
    model = get_peft_model(base_model, config)          # use_dora=True: sine-DoRA
    ...train...
    model.save_pretrained("adapter/")                    # adapter_config.json records sine_omega
    model = load_sine_lora(fresh_base_model, "adapter/") # NOT PeftModel.from_pretrained (see below)
    merged = model.merge_and_unload()                    # plain nn.Linear layers, sine delta merged

How it plugs in, through peft's own extension points only:
- `SineLoraConfig(LoraConfig)` adds `sine_omega` (tagged `is_lora_variant`, the way peft tags
  DoRA's `use_dora`) and `sine_scale` (g; None: sqrt(in_features)), and registers `SineLoraLinear`
  for nn.Linear targets with `LoraConfig._register_custom_module`.
- `SineLoraLinear(peft.tuners.lora.Linear)` extends the layer's variant table: `("sine_omega",)`
  -> `SineLoraLinearVariant`, `("sine_omega", "use_dora")` -> `SineDoraLinearVariant`, and returns
  the sine delta from `get_delta_weight`, which every merge path of peft (DoRA's too) calls.
- The delta is `sin(omega * B @ A) / g * lora_alpha / r`, computed by the project's one sine weight
  function (`layers.linear.sine_weight`). The forward pass applies this same weight delta (it
  does not put the sine on activations), so merged and unmerged models are the same function.
- Sine-DoRA is peft's DoRA (`DoraLinearVariant`: magnitude vector, detached column norm, its merge
  and unmerge) with the sine delta in place of B @ A: the magnitude starts at ||W0 + delta||_row
  and the forward is (m / ||W0 + delta||) * (W0 + delta) x + b.

Why a loader: `PeftModel.from_pretrained` rebuilds the config through peft's own `LoraConfig`,
which drops the unknown `sine_*` keys with a warning and silently builds vanilla LoRA layers
(wrong outputs). `load_sine_lora` reads the saved config as a `SineLoraConfig` first.

Scope: nn.Linear targets (transformers' Conv1D / fan_in_fan_out and quantised layers are not
covered); `convert_to_lora` is refused for these adapters (they are not B @ A).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora.layer import LoraVariant
from peft.tuners.lora.variants import DoraLinearVariant
from peft.utils.integrations import dequantize_module_weight
from peft.utils.other import transpose
from torch import nn

from neuralfields.layers.linear import sine_weight
from neuralfields.layers.spec import SINE_DEFAULT_OMEGA

CONFIG_FILE = "adapter_config.json"


@dataclass
class SineLoraConfig(LoraConfig):
    """A LoraConfig whose adapters are sine-LoRA (`use_dora=True`: sine-DoRA).

    sine_omega: the frequency omega (default: the project's sine default, 100; the authors' code
    takes it as a required argument). sine_scale: g, None for sqrt(in_features) as in the
    authors' code. The LoRA scaling lora_alpha / r applies on top, as in LoRA."""

    sine_omega: float = field(
        default=SINE_DEFAULT_OMEGA,
        metadata={"help": "Frequency omega of sine-LoRA: delta_W = sin(omega * B @ A) / g * lora_alpha / r.",
                  "is_lora_variant": True},
    )
    sine_scale: float | None = field(
        default=None, metadata={"help": "Divisor g of the sine delta; None: sqrt(in_features)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sine_omega, bool) or not isinstance(self.sine_omega, (int, float)) \
                or not math.isfinite(self.sine_omega) or self.sine_omega <= 0:
            raise ValueError(f"sine_omega must be a finite number > 0, got {self.sine_omega!r}")
        if self.sine_scale is not None and not (math.isfinite(self.sine_scale) and self.sine_scale > 0):
            raise ValueError(f"sine_scale must be a finite number > 0 or None, got {self.sine_scale!r}")
        self.sine_omega = float(self.sine_omega)
        self._register_custom_module({nn.Linear: SineLoraLinear})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, subfolder: str | None = None,
                        **kwargs: Any) -> SineLoraConfig:
        """The config a sine adapter folder was saved with (a local folder)."""
        folder = os.path.join(pretrained_model_name_or_path, subfolder) if subfolder else pretrained_model_name_or_path
        path = os.path.join(folder, CONFIG_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"{folder} holds no {CONFIG_FILE}: not a saved peft adapter")
        with open(path) as file:
            values = json.load(file)
        if "sine_omega" not in values:
            raise ValueError(f"{folder} holds a plain LoRA adapter (no sine_omega in {CONFIG_FILE}); "
                             f"load it with peft's PeftModel.from_pretrained")
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def _check_rank(module: LoraLinear, adapter_name: str, target_name: str | None) -> None:
    rank, limit = module.r[adapter_name], min(module.in_features, module.out_features)
    if rank > limit:
        where = f"layer {target_name!r} " if target_name else "a layer "
        raise ValueError(f"sine-LoRA rank {rank} is larger than {where}({module.in_features}->"
                         f"{module.out_features}) allows (at most {limit})")


def _register_sine(module: SineLoraLinear, adapter_name: str, config: SineLoraConfig, target_name: str | None) -> None:
    _check_rank(module, adapter_name, target_name)
    module.sine_omega[adapter_name] = float(config.sine_omega)
    module.sine_scale[adapter_name] = float(config.sine_scale) if config.sine_scale is not None \
        else math.sqrt(module.in_features)


class SineLoraLinearVariant(LoraVariant):
    """result + dropout(x) @ delta_W^T with delta_W = sin(omega * B @ A) / g * scaling; merges add
    the same delta_W to the base weight."""

    def supports_lora_conversion(self) -> bool:
        return False  # the delta is not B @ A

    @staticmethod
    def init(module: SineLoraLinear, adapter_name: str, config: SineLoraConfig | None = None, **kwargs: Any) -> None:
        _register_sine(module, adapter_name, config, kwargs.get("target_name"))

    @staticmethod
    def merge_safe(module: SineLoraLinear, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module: SineLoraLinear, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data += module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module: SineLoraLinear, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight.data - module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def forward(module: SineLoraLinear, active_adapter: str, x: torch.Tensor, result: torch.Tensor,
                **kwargs: Any) -> torch.Tensor:
        x = module.lora_dropout[active_adapter](x)
        return result + F.linear(x, module.sine_delta(active_adapter).to(x.dtype))


class SineDoraLinearVariant(DoraLinearVariant):
    """peft's DoRA with the sine delta: W' = m * (W0 + delta_W) / ||W0 + delta_W||_row (the norm
    detached, as in DoRA). Merge and unmerge are DoRA's own; they read the delta through
    `get_delta_weight`, which is the sine delta here."""

    def supports_lora_conversion(self) -> bool:
        return False

    @staticmethod
    def init(module: SineLoraLinear, adapter_name: str, config: SineLoraConfig | None = None, **kwargs: Any) -> None:
        _register_sine(module, adapter_name, config, kwargs.get("target_name"))
        DoraLinearVariant.init(module, adapter_name, config=config, **kwargs)
        with torch.no_grad():  # DoRA's init measured ||W0 + B A||; the sine adapter's delta is another one
            magnitude = module.lora_magnitude_vector[adapter_name].weight
            magnitude.copy_(_weight_norm(module, adapter_name).to(magnitude.dtype))

    @staticmethod
    def forward(module: SineLoraLinear, active_adapter: str, x: torch.Tensor, result: torch.Tensor,
                **kwargs: Any) -> torch.Tensor:
        dropout = module.lora_dropout[active_adapter]
        base_layer = module.get_base_layer()
        weight = _base_weight(module).to(x.dtype)
        delta = module.sine_delta(active_adapter).to(x.dtype)
        norm = torch.linalg.norm(weight + delta.detach(), dim=1).detach()
        factor = module.lora_magnitude_vector[active_adapter].weight / norm
        if isinstance(dropout, nn.Identity) or not module.training:
            base_result = result if base_layer.bias is None else result - base_layer.bias
        else:  # as in peft's DoRA: the adapter's terms see dropped-out inputs
            x = dropout(x)
            base_result = F.linear(x, weight)
        return result + (factor - 1) * base_result + factor * F.linear(x, delta)


def _base_weight(module: LoraLinear) -> torch.Tensor:
    """The base layer's weight as (out, in)."""
    return transpose(dequantize_module_weight(module.get_base_layer()), module.fan_in_fan_out)


def _weight_norm(module: SineLoraLinear, adapter_name: str) -> torch.Tensor:
    weight = _base_weight(module)
    return torch.linalg.norm(weight + module.sine_delta(adapter_name).to(weight.dtype), dim=1)


class SineLoraLinear(LoraLinear):
    """peft's LoRA Linear layer that also knows the sine variants (registered by SineLoraConfig).

    Adapters added with a plain LoraConfig (e.g. a second, vanilla adapter) behave as in peft."""

    other_param_names = LoraLinear.other_param_names + ("sine_omega", "sine_scale")

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config: LoraConfig, **kwargs: Any) -> None:
        if "sine_omega" not in self.__dict__:
            self.sine_omega: dict[str, float] = {}
            self.sine_scale: dict[str, float] = {}
        super().update_layer(adapter_name, r, lora_alpha, config=config, **kwargs)

    def resolve_lora_variant(self, *, config: LoraConfig, **kwargs: Any) -> LoraVariant | None:
        # peft requires every variant key of the table to be a field of the config: offer the sine
        # keys only to configs that have them
        self._offer_sine = any(item.name == "sine_omega" for item in dataclasses.fields(config))
        return super().resolve_lora_variant(config=config, **kwargs)

    @property
    def lora_variants(self) -> dict:
        variants = dict(super().lora_variants)
        if getattr(self, "_offer_sine", True):
            variants[("sine_omega",)] = SineLoraLinearVariant
            variants[("sine_omega", "use_dora")] = SineDoraLinearVariant
        return variants

    def sine_delta(self, adapter: str) -> torch.Tensor:
        """sin(omega * B @ A) / g * scaling as (out, in), in fp32 for half-precision adapters on CPU."""
        a, b = self.lora_A[adapter].weight, self.lora_B[adapter].weight
        if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
            delta = sine_weight(b.float(), a.float(), self.sine_omega[adapter], self.sine_scale[adapter])
            return (delta * self.scaling[adapter]).to(a.dtype)
        return sine_weight(b, a, self.sine_omega[adapter], self.sine_scale[adapter]) * self.scaling[adapter]

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        if adapter not in self.sine_omega:
            return super().get_delta_weight(adapter)
        return transpose(self.sine_delta(adapter), self.fan_in_fan_out)

    def __repr__(self) -> str:
        return "sine_" + super().__repr__()


def load_sine_lora(model: nn.Module, path: str | os.PathLike, adapter_name: str = "default",
                   is_trainable: bool = False, **kwargs: Any) -> PeftModel:
    """`PeftModel.from_pretrained` for a folder saved from a SineLoraConfig model: the sine variant
    (and sine-DoRA) is restored, not silently replaced by vanilla LoRA."""
    config = SineLoraConfig.from_pretrained(str(path))
    return PeftModel.from_pretrained(model, str(path), adapter_name=adapter_name, is_trainable=is_trainable,
                                     config=config, **kwargs)
