"""Parameter and storage counts, and the size relative to the same model built dense."""

from __future__ import annotations

from torch import nn



def is_factorised(module: nn.Module) -> bool:
    """Factorised layers of any registered kind report the size of their dense equivalent."""
    return hasattr(module, "dense_parameter_count")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def dense_parameter_count(model: nn.Module) -> int:
    """Parameters of the same model with every factorised layer replaced by nn.Linear."""
    total = 0
    for module in model.modules():
        if is_factorised(module):
            total += module.dense_parameter_count()
        else:
            total += sum(p.numel() for p in module.parameters(recurse=False))
    return total


def layer_table(model: nn.Module) -> list[dict]:
    """One row per linear layer: name, type, shape, rank, parameters and dense parameters."""
    rows = []
    for name, module in model.named_modules():
        if is_factorised(module) or isinstance(module, nn.Linear):
            factorised = is_factorised(module)
            rows.append({
                "name": name,
                "type": type(module).__name__,
                "in_features": module.in_features,
                "out_features": module.out_features,
                "rank": module.rank if factorised else None,
                "parameters": count_parameters(module),
                "dense_parameters": module.dense_parameter_count() if factorised else count_parameters(module),
            })
            # Layers with frozen parameters or a changing rank (adaptive rank, layers/oialr.py).
            rows[-1]["trainable_parameters"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
            if hasattr(module, "rank_history"):
                rows[-1]["rank_history"] = module.rank_history()
    return rows


def parameter_report(model: nn.Module) -> dict:
    """Parameters (and how many of them are trainable / frozen, e.g. with adapters), dense-equivalent
    parameters, % of dense and storage bytes at fp32 / fp16."""
    parameters = count_parameters(model)
    dense = dense_parameter_count(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "parameters": parameters,
        "trainable_parameters": trainable,
        "frozen_parameters": parameters - trainable,
        "dense_parameters": dense,
        "percent_of_dense": 100.0 * parameters / dense if dense else 100.0,
        "bytes_fp32": 4 * parameters,
        "bytes_fp16": 2 * parameters,
        "layers": layer_table(model),
    }
