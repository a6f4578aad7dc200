"""Worker side: reading a student's LoRA layer by behaviour, not by attribute names.

Runs inside the sandboxed worker (worker.py), next to student code. The
grader needs only this interface from the student's `lora` package:

* `lora.layer.LoRALinear(base, r, lora_alpha, lora_dropout, init_lora_weights, use_rslora)`,
  called positionally, keeps the nn.Linear it is given (under any attribute name)
  and computes with that layer's own weight and bias;
* it owns two tensors shaped (r, in_features) and (out_features, r), stored
  as nn.Parameter or as the weight of an nn.Linear, anywhere inside it;
* `merge()`, `unmerge()` and `delta_weight()` methods;
* `lora.apply.apply_lora(model, LoRAConfig(...))` and `lora.merge.merge_lora(model)`.

Tensors travel to and from the grader as nested lists of floats (JSON);
`tensor()` and `plain()` convert. Dimensions are chosen by the grader so that
(r, in) and (out, r) never coincide.
"""

import torch
import torch.nn as nn


class Fail(Exception):
    """A check failed; the message is the hint shown on the scorecard (it can only cost points)."""


def tensor(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).to(dtype)


def plain(value):
    """A tensor as nested lists of floats (None stays None), for JSON."""
    if value is None:
        return None
    return value.detach().to(torch.float64).tolist()


def make_layer(case: dict, dtype=torch.float32, **overrides):
    """(student LoRALinear, the base nn.Linear it wraps) for a case the grader chose: W, bias, r, alpha."""
    from lora.layer import LoRALinear

    spec = {"dropout": 0.0, "init": "kaiming", **case, **overrides}
    out_features, in_features = len(spec["W"]), len(spec["W"][0])
    base = nn.Linear(in_features, out_features, dtype=dtype)
    with torch.no_grad():
        base.weight.copy_(tensor(spec["W"], dtype))
        base.bias.copy_(tensor(spec["bias"], dtype))
    arguments = [base, spec["r"], spec["alpha"], spec["dropout"], spec["init"]]
    if spec.get("rslora"):
        arguments.append(True)
    return LoRALinear(*arguments), base


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
def set_matrices(layer: nn.Module, base: nn.Linear, r: int, a_values, b_values) -> tuple[torch.Tensor, torch.Tensor]:
    """Give A and B the grader's values (B is zero after init, which would hide most mistakes); return them."""
    a, b = lora_matrices(layer, base, r)
    a.copy_(tensor(a_values, a.dtype))
    b.copy_(tensor(b_values, b.dtype))
    return a, b


@torch.no_grad()
def read_delta_weight(layer: nn.Module) -> torch.Tensor:
    if not callable(getattr(layer, "delta_weight", None)):
        raise Fail("LoRALinear has no delta_weight() method: keep it, it returns (alpha/r) B @ A")
    return layer.delta_weight().detach().clone()
