"""LoRA+: a larger learning rate for B than for A (Hayou, Ghosh and Yu, 2024, arXiv:2402.12354).

With h = W x + s B A x, B starts at zero and A at random. Hayou et al. study
the large-width (infinite-width) limit and show that one learning rate for
both cannot be right for wide layers: for feature learning to be efficient,
the step size of B must grow relative to A's, eta_B = lambda * eta_A with
lambda >> 1. The paper suggests lambda = 2^4 = 16 as a default (16 is
also the default here); the authors' reference code (README) calls lambda
`loraplus_lr_ratio`, asks for it to be at least 1, and says to raise it for
harder tasks, with eta_A a little below a plain LoRA learning rate. The
optimizer stays AdamW: only the parameter groups change.

Groups built here (empty ones left out), each with a "name" key:

    lora_A    every trainable A weight        lr          weight_decay
    lora_B    every trainable B weight        lr * ratio  weight_decay
    decay     other trainable >= 2-D tensors  lr          weight_decay
    no_decay  other trainable 1-D tensors     lr          0.0

Weight decay follows this project's `make_optimizer` (minigpt/training.py):
matrices decay, vectors (biases, norms, DoRA's magnitude) do not.

Differences from PEFT's `create_loraplus_optimizer` (peft/optimizers/loraplus.py),
on purpose: PEFT sends every 1-D parameter (biases, DoRA's magnitude) to the
B learning rate, and gives LoRA adapters on embedding layers
(`lora_embedding_A/B`) a fixed absolute rate `loraplus_lr_embedding`
(default 1e-6) instead of a ratio. Here only B gets the ratio; trainable
embedding rows are ordinary parameters and get lr.
"""

import math

import torch.nn as nn

from lora.errors import LoRAError
from lora.layer import LoRALinear


def _positive_finite(name: str, value, allow_zero: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "greater than 0"
        raise LoRAError(f"{name} must be a finite number {bound}, got {value!r}")


def loraplus_parameter_groups(model: nn.Module, lr: float, loraplus_lr_ratio: float = 16.0,
                              weight_decay: float = 0.0) -> list[dict]:
    """AdamW parameter groups for LoRA+: lr for A and the rest, lr * loraplus_lr_ratio for B."""
    _positive_finite("lr", lr)
    _positive_finite("loraplus_lr_ratio", loraplus_lr_ratio)
    _positive_finite("weight_decay", weight_decay, allow_zero=True)
    a_ids, b_ids = set(), set()
    for module in model.modules():
        if isinstance(module, LoRALinear):  # DoRALinear too
            a_ids.add(id(module.lora_A.weight))
            b_ids.add(id(module.lora_B.weight))

    buckets = {"lora_A": [], "lora_B": [], "decay": [], "no_decay": []}
    for parameter in model.parameters():  # each shared tensor once
        if not parameter.requires_grad:
            continue
        if id(parameter) in b_ids:
            buckets["lora_B"].append(parameter)
        elif id(parameter) in a_ids:
            buckets["lora_A"].append(parameter)
        elif parameter.dim() >= 2:
            buckets["decay"].append(parameter)
        else:
            buckets["no_decay"].append(parameter)
    if not any(buckets.values()):
        raise LoRAError("the model has no trainable parameters; apply LoRA (or unfreeze something) first")

    settings = {  # name: (learning rate, weight decay)
        "lora_A": (lr, weight_decay),
        "lora_B": (lr * loraplus_lr_ratio, weight_decay),
        "decay": (lr, weight_decay),
        "no_decay": (lr, 0.0),
    }
    return [{"name": name, "params": params, "lr": settings[name][0], "weight_decay": settings[name][1]}
            for name, params in buckets.items() if params]
