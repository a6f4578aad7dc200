"""BitFit (Ben Zaken, Ravfogel and Goldberg, 2022, "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models", section 3): train the bias terms only.

Every weight matrix, embedding and LayerNorm scale stays frozen; every bias
trains. In MiniGPT's block:

    Q = W_q x + b_q,  K = W_k x + b_k,  V = W_v x + b_v,  o = W_o y + b_o
    LN(x) = γ ⊙ (x - μ)/σ + β                (β trains, γ does not)
    FF(x) = W_2 GELU(W_1 x + b_1) + b_2

Trainable parameters: the sum of every bias's length. For MiniGPT
(q, k, v, o: d each; up_proj: 4d; down_proj: d; two LayerNorm shifts: d each;
the final LayerNorm's shift: d): n_layer · 11 · d + d.

Nothing is inserted, so the model starts equal to the base and "merging" is
only copying the trained biases back: the served model is a plain MiniGPT with
the same cost per token. The saved task is the biases alone.
"""

import torch.nn as nn

from peft_methods.errors import PeftMethodError
from peft_methods.modules import freeze


def bias_names(model: nn.Module) -> list[str]:
    """Every parameter that is a bias: nn.Linear's and nn.LayerNorm's `bias`."""
    return [name for name, _ in model.named_parameters() if name.rpartition(".")[2] == "bias"]


def apply_bitfit(model: nn.Module) -> list[str]:
    """Freeze everything except the biases; returns their names."""
    names = bias_names(model)
    if not names:
        raise PeftMethodError("the model has no bias terms, so BitFit has nothing to train (MiniGPT: keep bias true)")
    freeze(model)
    parameters = dict(model.named_parameters())
    for name in names:
        parameters[name].requires_grad_(True)
    return names


def bitfit_state_dict(model: nn.Module) -> dict:
    parameters = dict(model.named_parameters())
    return {name: parameters[name].detach().cpu().clone() for name in bias_names(model)}


def bitfit_parameter_count(n_layer: int, n_embd: int) -> int:
    """The docstring's formula for MiniGPT: 11 biases of d per block (up_proj's counts 4) plus the final LayerNorm's."""
    return n_layer * 11 * n_embd + n_embd


def load_bitfit_state_dict(model: nn.Module, tensors: dict, source: str) -> None:
    """Copy saved biases into the model; the names and shapes must be exactly the model's biases."""
    parameters = dict(model.named_parameters())
    expected = bias_names(model)
    if set(tensors) != set(expected):
        raise PeftMethodError(f"{source} does not hold exactly this model's {len(expected)} biases "
                              f"(missing {sorted(set(expected) - set(tensors))[:3]}, unexpected {sorted(set(tensors) - set(expected))[:3]})")
    for name in expected:
        if tuple(tensors[name].shape) != tuple(parameters[name].shape):
            raise PeftMethodError(f"{source}: {name} has shape {tuple(tensors[name].shape)}, the model needs {tuple(parameters[name].shape)}")
        parameters[name].data.copy_(tensors[name])
