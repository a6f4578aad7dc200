"""`merge_lora`: fold every LoRA update into its base weight and give back a plain model.

Each LoRALinear is merged (W <- W + (alpha/r) B A) and replaced by its base
nn.Linear, so the result holds no LoRA code at all: its state dict has the
original model's keys and loads with strict=True into a fresh copy of the
original architecture. Inference then costs exactly what the base model costs.

A QLoRA model merges into float32 weights: the dequantized 4-bit base plus
the update. That is exact for what the adapter was trained against (the
dequantized base), not for the original float base it was quantized from.

Coursework: the `raise NotImplementedError` in merge_lora marks your TODO (task 3).
"""

import copy

import torch.nn as nn

from lora.apply import lora_layers, set_submodule
from lora.nf4 import NF4Linear, dequantize_to_linear, merge_qlora


def merge_lora(model: nn.Module) -> nn.Module:
    """A merged deep copy of `model`, in eval mode; the LoRA model passed in is left as it was."""
    # TODO (task 3): work on a deep copy (copy.deepcopy), never on `model` itself;
    #   merge every LoRALinear of the copy (lora_layers) and put its base nn.Linear in its
    #   place (set_submodule); a layer whose base is an NF4Linear (QLoRA, 4-bit) cannot be merged
    #   in place: put merge_qlora(layer) (given, lora/nf4.py) there instead, and turn any other
    #   NF4Linear left in the copy into dequantize_to_linear(it); make every parameter of the copy
    #   trainable again, as in a freshly loaded model; return the copy in eval mode.
    raise NotImplementedError("not implemented yet: merge_lora (merge each LoRALinear, replace it by its base nn.Linear)")
