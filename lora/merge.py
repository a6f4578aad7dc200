"""`merge_lora`: fold every LoRA update into its base weight and give back a plain model.

Each LoRALinear is merged (W <- W + (alpha/r) B A) and replaced by its base
nn.Linear, so the result holds no LoRA code at all: its state dict has the
original model's keys and loads with strict=True into a fresh copy of the
original architecture. Inference then costs exactly what the base model costs.
"""

import copy

import torch.nn as nn

from lora.apply import lora_layers, set_submodule


def merge_lora(model: nn.Module) -> nn.Module:
    """A merged deep copy of `model`, in eval mode; the LoRA model passed in is left as it was."""
    merged = copy.deepcopy(model)
    for name, layer in lora_layers(merged).items():
        layer.merge()
        set_submodule(merged, name, layer.base)
    for parameter in merged.parameters():
        parameter.requires_grad_(True)  # an ordinary model again, as if freshly loaded
    return merged.eval()
