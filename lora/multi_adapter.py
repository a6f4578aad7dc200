"""Several named LoRA adapters on one frozen base: add, switch, disable, delete, mix.

This is LoRA's practical promise (Hu et al., 2021, section 4.2): one frozen
base, many small task adapters, swapped at run time. `MultiLoRALinear` is
LoRALinear (lora/layer.py, read that first) with a dictionary of (A, B) pairs
instead of one, keyed by adapter name, as PEFT keeps them:

    h = W x + b + sum over active adapters i of  w_i * s_i * B_i A_i dropout_i(x)

s_i is adapter i's own scaling: alpha_i / r_i, or alpha_i / sqrt(r_i) for an
rsLoRA adapter (lora/scaling.py), exactly the factor LoRALinear uses.

`active` maps adapter names to weights w_i. {} is the base model exactly;
{"cooking": 1.0} is the cooking adapter exactly, as if it were the only one;
{"cooking": 0.5, "sport": 0.5} is a weighted mix. W is never written to, so
switching costs nothing but changing that dictionary, and the base weights stay
bit-identical however often you switch.

Mixing the updates is not averaging the matrices
------------------------------------------------
The mix above adds the updates:  delta_W = sum_i w_i s_i B_i A_i.
That is exact, and its rank can reach r_1 + r_2 + ...: stacking the factors,
[w_1 s_1 B_1 | w_2 s_2 B_2] @ [A_1 ; A_2] is the same matrix. Combining the
factors instead, (sum_i c_i B_i) (sum_j c_j A_j), does two different things:
1. the diagonal terms c_i^2 B_i A_i: with c_i = w_i sqrt(s_i) (what
   `factor_average_delta` computes) they are w_i^2 s_i B_i A_i, each update
   shrunk by a further factor w_i (a quarter, not a half, at w = 0.5);
   PEFT's add_weighted_adapter with combination_type "linear" takes
   c_i = sqrt(w_i s_i), which keeps the diagonal exact (w_i s_i B_i A_i);
2. the cross terms c_i c_j B_i A_j (i != j), which no adapter learned:
   A_j's directions read by B_i's outputs. Two adapters trained separately
   have unrelated A matrices, so these are noise. PEFT's "linear" has them
   too; its "cat" stacks the factors and is exact, like the mix above.
`factor_average_delta` lets the tests show the difference.

Only additive adapters can be mixed
-----------------------------------
A DoRA adapter is not an update added to W: it rescales every output row of
W + s B A to a trained magnitude (lora/dora.py), so it has no term to put in
the sum above. A QLoRA adapter was trained on the 4-bit NF4 copy of the base
(lora/nf4.py); on the float32 base this layer holds it computes another model.
`add_adapter` refuses both in one line that says so, rather than serve a model
that was never trained; load such an adapter on its own (lora.apply_lora, or
experiment/training/adapter.py's load_adapter).

Model-level functions use PEFT's vocabulary: add_adapter, set_adapter,
disable_adapters (a context manager), delete_adapter, and set_adapter_weights
for a mix. Targets are matched by module-name suffix, as in lora/apply.py.
"""

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

from lora.apply import _matches, set_submodule
from lora.config import LoRAConfig
from lora.errors import LoRAError


class MultiLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base  # the original layer, kept whole and frozen
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.lora_A = nn.ModuleDict()  # name -> nn.Linear(in, r): weight (r, in)
        self.lora_B = nn.ModuleDict()  # name -> nn.Linear(r, out): weight (out, r)
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}  # name -> alpha / r, or alpha / sqrt(r) for rsLoRA
        self.active: dict[str, float] = {}  # name -> weight in the sum; {} = the base layer alone

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def add_adapter(self, name: str, config: LoRAConfig) -> None:
        if name in self.lora_A:
            raise LoRAError(f"an adapter named {name!r} is already loaded; delete it first or choose another name")
        device, dtype = self.base.weight.device, self.base.weight.dtype
        self.lora_A[name] = nn.Linear(self.in_features, config.r, bias=False, device=device, dtype=dtype)
        self.lora_B[name] = nn.Linear(config.r, self.out_features, bias=False, device=device, dtype=dtype)
        self.lora_dropout[name] = nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        self.scaling[name] = config.scaling  # the adapter's own factor: rsLoRA's alpha / sqrt(r) too
        with torch.no_grad():  # the same start as LoRALinear: A random, B = 0
            if config.init_lora_weights == "gaussian":
                nn.init.normal_(self.lora_A[name].weight, std=1.0 / config.r)
            else:
                nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[name].weight)

    def delete_adapter(self, name: str) -> None:
        for table in (self.lora_A, self.lora_B, self.lora_dropout):
            del table[name]
        del self.scaling[name]
        self.active.pop(name, None)

    def delta_weight(self, name: str) -> torch.Tensor:
        """s * B @ A for one adapter, shaped like the base weight (out_features, in_features)."""
        return self.scaling[name] * (self.lora_B[name].weight @ self.lora_A[name].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        for name, weight in self.active.items():
            if name in self.lora_A:  # an adapter that does not target this layer adds nothing here
                coefficient = weight * self.scaling[name]  # a Python float: weight 1.0 gives exactly LoRALinear's scaling
                out = out + coefficient * self.lora_B[name](self.lora_A[name](self.lora_dropout[name](x)))
        return out

    def extra_repr(self) -> str:
        adapters = ", ".join(f"{n}(r={self.lora_A[n].out_features}, scaling={self.scaling[n]:g})" for n in self.lora_A)
        return f"adapters=[{adapters}], active={self.active}"


def multi_lora_layers(model: nn.Module) -> dict[str, MultiLoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiLoRALinear)}


def adapter_names(model: nn.Module) -> list[str]:
    """Every adapter loaded into any layer, in the order they were added."""
    names = []
    for layer in multi_lora_layers(model).values():
        names += [n for n in layer.lora_A if n not in names]
    return names


def add_adapter(model: nn.Module, name: str, config: LoRAConfig) -> dict[str, MultiLoRALinear]:
    """Give every targeted nn.Linear (or MultiLoRALinear) a new (A, B) pair named `name`; freeze the rest.

    The new adapter is not active yet: call set_adapter. Returns {module name: layer} for the targeted layers.
    """
    config.validate()
    check_mixable(config)
    if not isinstance(name, str) or not name.isidentifier():
        raise LoRAError(f"adapter name {name!r} must be a word of letters, digits and underscores, e.g. cooking")
    if name in adapter_names(model):
        raise LoRAError(f"an adapter named {name!r} is already loaded; delete it first or choose another name")
    candidates = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, MultiLoRALinear))}
    candidates = {n: m for n, m in candidates.items() if not any(n.startswith(p + ".") for p in multi_lora_layers(model))}
    tied = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    chosen = {}
    for target in config.target_modules:
        found = {n: m for n, m in candidates.items() if _matches(n, target)}
        if not found:
            layers = sorted({n.rpartition(".")[2] for n in candidates})
            raise LoRAError(f"LoRA target {target!r} matches no nn.Linear in the model; the layers are: {', '.join(layers)}")
        chosen.update(found)
    for layer_name, layer in chosen.items():
        weight = layer.base.weight if isinstance(layer, MultiLoRALinear) else layer.weight
        if id(weight) in tied:
            raise LoRAError(f"{layer_name} shares its weight with the token embedding (weight tying); it cannot be a LoRA target")
        limit = min(weight.shape)
        if config.r > limit:
            raise LoRAError(f"LoRA rank {config.r} is larger than {layer_name} allows (min(in, out) = {limit}); use a rank from 1 to {limit}")
    current = active_adapters(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = {}
    for layer_name, layer in chosen.items():
        if not isinstance(layer, MultiLoRALinear):
            layer = MultiLoRALinear(layer)
            layer.active = dict(current)  # a newly wrapped layer joins the mix the others already run
            set_submodule(model, layer_name, layer)
        layer.add_adapter(name, config)
        wrapped[layer_name] = layer
    return wrapped


def check_mixable(config: LoRAConfig) -> None:
    """A LoRAError saying why, for an adapter that is not a plain additive update on the float base."""
    if config.use_dora:
        raise LoRAError("a DoRA adapter cannot join a multi-adapter model: it rescales each row of the whole weight "
                        "to a trained magnitude instead of adding B A, so it cannot be summed or mixed; load it on its own")
    if config.quantize_base != "none":
        raise LoRAError(f"a QLoRA adapter (quantize_base={config.quantize_base!r}) was trained on a 4-bit NF4 copy of the base, "
                        "not on the float32 base a multi-adapter model shares; load it on its own, on its 4-bit base")


def _check_known(model: nn.Module, names) -> None:
    known = adapter_names(model)
    for name in names:
        if name not in known:
            raise LoRAError(f"unknown adapter {name!r}; loaded adapters: {', '.join(known) or 'none'}")


def set_adapter_weights(model: nn.Module, weights: dict[str, float]) -> None:
    """Activate a weighted mix: delta_W = sum_i w_i s_i B_i A_i in every layer. {} turns every adapter off."""
    _check_known(model, weights)
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise LoRAError(f"the weight of adapter {name!r} must be a finite number, got {weight!r}")
    for layer in multi_lora_layers(model).values():
        layer.active = {name: float(weight) for name, weight in weights.items()}


def set_adapter(model: nn.Module, name: str) -> None:
    """Make `name` the one active adapter (weight 1): the model computes exactly base + that adapter."""
    set_adapter_weights(model, {name: 1.0})


def active_adapters(model: nn.Module) -> dict[str, float]:
    layers = list(multi_lora_layers(model).values())
    return dict(layers[0].active) if layers else {}


@contextmanager
def disable_adapters(model: nn.Module) -> Iterator[None]:
    """Inside the block the model is the base model exactly; the previous mix comes back afterwards."""
    previous = {name: layer.active for name, layer in multi_lora_layers(model).items()}
    try:
        for layer in multi_lora_layers(model).values():
            layer.active = {}
        yield
    finally:
        for name, layer in multi_lora_layers(model).items():
            layer.active = previous[name]


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove the adapter's tensors from every layer (the other adapters and the base stay as they are)."""
    _check_known(model, [name])
    for layer in multi_lora_layers(model).values():
        if name in layer.lora_A:
            layer.delete_adapter(name)


def adapter_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """One adapter's A and B, under the single-adapter keys of lora/state.py ("<layer>.lora_A.weight")."""
    _check_known(model, [name])
    state = {}
    for layer_name, layer in multi_lora_layers(model).items():
        if name in layer.lora_A:
            state[f"{layer_name}.lora_A.weight"] = layer.lora_A[name].weight.detach().cpu().clone()
            state[f"{layer_name}.lora_B.weight"] = layer.lora_B[name].weight.detach().cpu().clone()
    return state


def load_adapter_state_dict(model: nn.Module, name: str, state: dict, source: str = "adapter") -> None:
    """Copy a single-adapter state dict (lora_state_dict's keys) into adapter `name`; keys and shapes must fit exactly."""
    expected = adapter_state_dict(model, name)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise LoRAError(f"{source} does not fit this model: {len(missing)} missing key(s) {missing[:3]}, "
                        f"{len(unexpected)} unexpected key(s) {unexpected[:3]}; was it trained with other target modules?")
    layers = multi_lora_layers(model)
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise LoRAError(f"{source}: {key} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}")
        layer_name, _, rest = key.partition(".lora_")
        table = layers[layer_name].lora_A if rest.startswith("A") else layers[layer_name].lora_B
        with torch.no_grad():
            table[name].weight.copy_(tensor)


def factor_average_delta(layer: MultiLoRALinear, weights: dict[str, float]) -> torch.Tensor:
    """(sum_i w_i sqrt(s_i) B_i) @ (sum_i w_i sqrt(s_i) A_i): averaging the factors, NOT the exact mix.

    Needs equal ranks. With one adapter at weight 1 it equals that adapter's
    update; with two it adds cross terms B_i A_j (see the module docstring).
    """
    ranks = {layer.lora_A[name].out_features for name in weights}
    if len(ranks) != 1:
        raise LoRAError(f"averaging A and B needs adapters of one rank, got ranks {sorted(ranks)}")
    B = sum(w * math.sqrt(layer.scaling[n]) * layer.lora_B[n].weight for n, w in weights.items())  # (out, r)
    A = sum(w * math.sqrt(layer.scaling[n]) * layer.lora_A[n].weight for n, w in weights.items())  # (r, in)
    return B @ A
