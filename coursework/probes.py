"""Reading a student's LoRA layer by behaviour, not by attribute names.

The grader needs only this interface from the student's `lora` package:

* `lora.layer.LoRALinear(base, r, lora_alpha, lora_dropout, init_lora_weights)`,
  called positionally, keeps the nn.Linear it is given (under any attribute name)
  and computes with that layer's own weight and bias;
* it owns two tensors shaped (r, in_features) and (out_features, r), stored
  as nn.Parameter or as the weight of an nn.Linear, anywhere inside it;
* `merge()` and `unmerge()` methods; `delta_weight()` is optional (without
  it, delta_W is read as merged W minus W on a deep copy);
* `lora.apply.apply_lora(model, LoRAConfig(...))` and `lora.merge.merge_lora(model)`.

Dimensions are chosen by the checks so that (r, in) and (out, r) never coincide.
"""

import copy

import torch
import torch.nn as nn


class Fail(Exception):
    """A check failed; the message is the hint shown on the scorecard."""


def lora_matrices(layer: nn.Module, base: nn.Linear, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B): the layer's own tensors shaped (r, in) and (out, r); the base's parameters are skipped."""
    base_ids = {id(p) for p in base.parameters()}
    own = [(name, p) for name, p in layer.named_parameters() if id(p) not in base_ids]
    a_shape, b_shape = (r, base.in_features), (base.out_features, r)
    a = [p for _, p in own if tuple(p.shape) == a_shape]
    b = [p for _, p in own if tuple(p.shape) == b_shape]
    if not a or not b:
        found = ", ".join(f"{name} {tuple(p.shape)}" for name, p in own) or "none"
        raise Fail(f"expected A of shape (r, in) = {a_shape} and B of shape (out, r) = {b_shape}; "
                   f"the layer's own parameters are: {found}. Store A as (r, in) and B as (out, r), so delta_W = B @ A")
    return a[0], b[0]


@torch.no_grad()
def randomize(layer: nn.Module, base: nn.Linear, r: int, std: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Give A and B random values (B is zero after init, which would hide most mistakes); return them."""
    a, b = lora_matrices(layer, base, r)
    generator = torch.Generator().manual_seed(seed)
    a.copy_(torch.randn(a.shape, generator=generator, dtype=torch.float64) * std)
    b.copy_(torch.randn(b.shape, generator=generator, dtype=torch.float64) * std)
    return a, b


def expected_output(base: nn.Linear, a: torch.Tensor, b: torch.Tensor, scaling: float, x: torch.Tensor) -> torch.Tensor:
    """W x + b + scaling * B A x, computed independently in float64."""
    x64 = x.double()
    frozen = x64 @ base.weight.double().T + (base.bias.double() if base.bias is not None else 0.0)
    return frozen + scaling * (x64 @ a.double().T @ b.double().T)


@torch.no_grad()
def read_delta_weight(layer: nn.Module, base: nn.Linear) -> torch.Tensor:
    """delta_W from `delta_weight()` if the layer has one, else merged W minus W on a deep copy."""
    if callable(getattr(layer, "delta_weight", None)):
        return layer.delta_weight().detach().clone()
    layer_copy, base_copy = copy.deepcopy((layer, base))
    before = base_copy.weight.detach().clone()
    layer_copy.merge()
    return base_copy.weight.detach() - before


def max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got.double() - want.double()).abs().max().item()
