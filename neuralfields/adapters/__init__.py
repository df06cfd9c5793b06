"""The layer core as adapters of existing models: LoRA-style updates of any nn.Linear.

- Plain PyTorch, no extra package (`adapters.plain`): `add_adapters(model, "sine:4", targets=[...])`,
  `merge_adapters`, `unmerge_adapters`, `merge_and_unload`, `adapter_layers`.
- Hugging Face PEFT (`adapters.peft_sine`, needs the `adapters` extra: peft, transformers):
  `SineLoraConfig` (sine-LoRA, and sine-DoRA with `use_dora=True`) for `peft.get_peft_model`, and
  `load_sine_lora` to load a saved sine adapter. Imported on first use, so the plain path and the
  rest of the library never import peft.
"""

from __future__ import annotations

from neuralfields.adapters.plain import (
    AdaptedLinear, adapter_layers, add_adapters, merge_adapters, merge_and_unload, unmerge_adapters,
)

_PEFT_NAMES = ("SineLoraConfig", "SineLoraLinear", "SineLoraLinearVariant", "SineDoraLinearVariant", "load_sine_lora")

__all__ = ["AdaptedLinear", "adapter_layers", "add_adapters", "merge_adapters", "merge_and_unload",
           "unmerge_adapters", *_PEFT_NAMES]


def __getattr__(name: str):
    if name in _PEFT_NAMES:
        try:
            from neuralfields.adapters import peft_sine
        except ImportError as exc:
            raise ImportError(f"{name} needs peft: pip install 'neuralfields[adapters]' ({exc})") from None
        return getattr(peft_sine, name)
    raise AttributeError(f"module 'neuralfields.adapters' has no attribute {name!r}")
