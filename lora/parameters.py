"""Counting parameters: trainable versus total, overall and per module."""

import torch.nn as nn

from lora.nf4 import NF4Linear


def count_parameters(model: nn.Module) -> dict:
    """{"total", "trainable", "trainable_percent"}; a tied (shared) tensor is counted once."""
    unique = {id(p): p for p in model.parameters()}.values()
    # A 4-bit base (QLoRA) holds its frozen weights as buffers; they are still the model's parameters.
    quantized = sum(m.in_features * m.out_features + (0 if m.bias is None else m.bias.numel())
                    for m in model.modules() if isinstance(m, NF4Linear))
    total = sum(p.numel() for p in unique) + quantized
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_percent": 100.0 * trainable / total}


def parameter_breakdown(model: nn.Module) -> list[dict]:
    """One row per module that owns parameters directly: its name, total and trainable counts."""
    rows, seen = [], set()
    for module_name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            rows.append({
                "module": module_name or "(model)",
                "total": sum(p.numel() for p in own),
                "trainable": sum(p.numel() for p in own if p.requires_grad),
            })
    return rows


def lora_matrix_savings(in_features: int, out_features: int, r: int) -> dict:
    """One adapted matrix: full update in*out parameters against LoRA's r*(in+out)."""
    full, lora = in_features * out_features, r * (in_features + out_features)
    return {"full": full, "lora": lora, "ratio": lora / full}
