"""`merge_lora`: fold every LoRA update into its base weight and give back a plain model.

Each LoRALinear is merged (W <- W + (alpha/r) B A) and replaced by its base
nn.Linear, so the result holds no LoRA code at all: its state dict has the
original model's keys and loads with strict=True into a fresh copy of the
original architecture. Inference then costs exactly what the base model costs.

A QLoRA model merges into float32 weights: the dequantized 4-bit base plus
the update. That is exact for what the adapter was trained against (the
dequantized base), not for the original float base it was quantized from.
"""

import copy

import torch.nn as nn

from lora.apply import lora_layers, set_submodule
from lora.nf4 import NF4Linear, dequantize_to_linear, merge_qlora


def merge_lora(model: nn.Module) -> nn.Module:
    """A merged deep copy of `model`, in eval mode; the LoRA model passed in is left as it was."""
    merged = copy.deepcopy(model)
    for name, layer in lora_layers(merged).items():
        if isinstance(layer.base, NF4Linear):  # QLoRA: a float32 layer from the dequantized weight + the update
            set_submodule(merged, name, merge_qlora(layer))
            continue
        layer.merge()
        set_submodule(merged, name, layer.base)
    for name, quantized in [(n, m) for n, m in merged.named_modules() if isinstance(m, NF4Linear)]:
        set_submodule(merged, name, dequantize_to_linear(quantized))  # untargeted 4-bit layers: float32 again
    for parameter in merged.parameters():
        parameter.requires_grad_(True)  # an ordinary model again, as if freshly loaded
    return merged.eval()
