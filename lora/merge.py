"""`merge_lora`: fold every LoRA update into its base weight and return a plain MiniGPT.

The result has no LoRALinear left: each one is merged (W <- W + (alpha/r) B A)
and replaced by its base nn.Linear, and split embedding rows are joined again.
Its state dict loads with strict=True into a fresh MiniGPT, so the merged
model is served by code that has never heard of LoRA.
"""

import copy

from lora.apply import lora_layers, set_submodule
from minigpt.new_token_rows import join_new_token_rows


def merge_lora(model):
    """A merged deep copy of `model`; the LoRA model passed in is left as it was."""
    merged = copy.deepcopy(model)
    for name, layer in lora_layers(merged).items():
        layer.merge()
        set_submodule(merged, name, layer.base)
    join_new_token_rows(merged)
    for parameter in merged.parameters():
        parameter.requires_grad_(True)  # an ordinary model again, as if freshly loaded
    return merged.eval()
