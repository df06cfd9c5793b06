"""Real quantisation of a model's stored numbers, and the bytes each precision takes.

What is stored is what is quantised: a factorised layer's U and V (never the W they make), a
dense layer's weight, every bias. The quantised tensors are turned back into float32 and loaded
into the model, which then computes in float32, so a re-evaluation measures storage precision only.

    fp32  4 bytes a number (the trained model as saved).
    fp16  2 bytes a number: each tensor rounded to IEEE half precision.
    int8  1 byte a number plus one float32 scale (4 bytes) per group, symmetric:
          scale = max|group| / 127, q = round(x / scale) clipped to [-127, 127], x' = q * scale,
          so |x - x'| <= scale / 2. The groups that share a scale:
            dense weight (out, in)   each output row (in numbers);
            U (out, K), V (in, K)    each rank component, i.e. each column (out or in numbers):
                                     the output rows of the layer's two thin maps, x -> x V and
                                     h -> h U^T, seen from the rank side;
            bias, other vectors      the whole vector.
          Why not one scale per row of U and V: a row of a rank-K factor holds only K numbers, so
          at rank 1 every number would get its own scale: stored exactly, in 5 bytes, more than
          fp32. Column groups keep int8 at about 1 byte a number and make it really round.
"""

from __future__ import annotations

import torch
from torch import nn

from neuralfields.layers.counting import is_factorised

PRECISIONS = ("fp32", "fp16", "int8")
INT8_LEVELS = 127
SCALE_BYTES = 4


def int8_groups(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes, float32 scales (G, 1)) of a 2-D tensor whose rows are the groups."""
    groups = groups.detach().float()
    scales = groups.abs().amax(dim=1, keepdim=True) / INT8_LEVELS
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # an all-zero group stays zero
    codes = torch.round(groups / scales).clamp(-INT8_LEVELS, INT8_LEVELS).to(torch.int8)
    return codes, scales


def quantize_tensor(tensor: torch.Tensor, precision: str, factor: bool = False) -> tuple[torch.Tensor, int]:
    """(the tensor after a round trip through `precision`, float32 of its shape; its bytes).
    `factor`: the tensor is a U or V factor, quantised per column at int8 (module docstring)."""
    tensor = tensor.detach().float()
    if precision == "fp32":
        return tensor.clone(), 4 * tensor.numel()
    if precision == "fp16":
        return tensor.half().float(), 2 * tensor.numel()
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if factor:
        codes, scales = int8_groups(tensor.T)
        return (codes.float() * scales).T.contiguous(), codes.numel() + SCALE_BYTES * scales.numel()
    groups = tensor.reshape(1, -1) if tensor.dim() < 2 else tensor.reshape(tensor.shape[0], -1)
    codes, scales = int8_groups(groups)
    return (codes.float() * scales).reshape(tensor.shape), codes.numel() + SCALE_BYTES * scales.numel()


def quantized_parameters(model: nn.Module, precision: str) -> tuple[dict[str, torch.Tensor], int]:
    """({parameter name: its value after the round trip}, total bytes) for every parameter of
    the model; load them into a copy with `copy.load_state_dict(values, strict=False)`."""
    values, total = {}, 0
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            factor = is_factorised(module) and name in ("U", "V")
            value, size = quantize_tensor(parameter, precision, factor)
            values[f"{module_name}.{name}" if module_name else name] = value.to(parameter.device)
            total += size
    return values, total
