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


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype worth using on a device: float16 on CUDA, bfloat16 on CPUs whose
    oneDNN has native bf16 matmuls (AVX512-BF16 or AMX; 1.4x the NeRF training steps per second on
    our Zen 4 machine, benchmarks/results/nerf_cpu_tuning/mp_*.json), else None (emulated bf16
    would only add work). The bf16 check is oneDNN's own (a private torch op)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None
