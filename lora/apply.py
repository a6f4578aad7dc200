"""Put LoRA into a model, and read or write just the LoRA tensors.

`apply_lora` walks the model, replaces each nn.Linear whose module name ends
with a target name (PEFT's suffix matching: "q_proj" matches
"blocks.0.attention.q_proj") by a LoRALinear wrapping it, and freezes every
other parameter. A target that matches nothing is an error, never a silent no-op.
"""

import torch.nn as nn

from lora.config import LoRAConfig
from lora.layer import LoRALinear
from minigpt.errors import UserError


def _matches(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child_name = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child_name, module)


def apply_lora(model: nn.Module, config: LoRAConfig) -> dict[str, LoRALinear]:
    """Wrap the targeted nn.Linear layers in LoRALinear and freeze all base parameters.

    Returns {module name: LoRALinear}. Afterwards only the A and B matrices
    require gradients (callers may unfreeze more, e.g. new embedding rows).
    """
    config.validate()
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    layer_names = sorted({name.rpartition(".")[2] for name in linears})
    tied = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    chosen = {}
    for target in config.target_modules:
        found = {name: m for name, m in linears.items() if _matches(name, target)}
        if not found:
            raise UserError(f"LoRA target {target!r} matches no nn.Linear in the model; the layers are: {', '.join(layer_names)}")
        chosen.update(found)
    for name, linear in chosen.items():
        if id(linear.weight) in tied:
            raise UserError(f"{name} shares its weight with the token embedding (weight tying); it cannot be a LoRA target")
        limit = min(linear.in_features, linear.out_features)
        if config.r > limit:
            raise UserError(f"LoRA rank {config.r} is larger than {name} allows (min(in, out) = {limit}); use a rank from 1 to {limit}")

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = {}
    for name, linear in chosen.items():
        layer = LoRALinear(linear, config.r, config.lora_alpha, config.lora_dropout, config.init_lora_weights)
        set_submodule(model, name, layer)
        wrapped[name] = layer
    return wrapped


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_state_dict(model: nn.Module) -> dict:
    """Exactly the A and B tensors: {"<layer>.lora_A.weight": ..., "<layer>.lora_B.weight": ...}."""
    state = {}
    for name, layer in lora_layers(model).items():
        state[f"{name}.lora_A.weight"] = layer.lora_A.weight.detach().cpu().clone()
        state[f"{name}.lora_B.weight"] = layer.lora_B.weight.detach().cpu().clone()
    return state


def load_lora_state_dict(model: nn.Module, state: dict, source: str = "adapter") -> None:
    """Copy A and B tensors in; the key sets and shapes must match exactly."""
    expected = lora_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"{source} does not fit this model: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}; was it trained with other --targets?"
        )
    layers = lora_layers(model)
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise UserError(f"{source}: {key} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}; was it trained with another --rank?")
        layer_name, _, parameter_path = key.partition(".lora_")
        target = getattr(layers[layer_name], "lora_" + parameter_path.split(".")[0]).weight
        target.data.copy_(tensor.to(target.device, target.dtype))
