"""Device choice: CUDA when present, else CPU, with an explicit override."""

from __future__ import annotations

import torch

from neuralfields.errors import NeuralFieldsError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda when available; `cpu`, `cuda`, `cuda:N` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NeuralFieldsError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuralFieldsError(f"device {name!r} requested but no CUDA GPU is available")
    return device
