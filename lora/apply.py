"""Put LoRA into any nn.Module: wrap the targeted nn.Linear layers, freeze everything else.

`apply_lora` walks the model, replaces each nn.Linear whose module name ends
with a target name (PEFT's suffix matching: "q_proj" matches
"blocks.0.attention.q_proj") by a LoRALinear wrapping it, and freezes every
other parameter. A target that matches nothing is an error, never a silent no-op.
"""

import torch.nn as nn

from lora.config import LoRAConfig
from lora.layer import LoRALinear
from lora.variants import build_lora_layer, quantize_untargeted_linears
from lora.errors import LoRAError


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
    if lora_layers(model):
        raise LoRAError("the model already has LoRA layers; apply LoRA to a fresh copy of the base model, or merge_lora first")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    layer_names = sorted({name.rpartition(".")[2] for name in linears})
    tied = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    chosen = {}
    for target in config.target_modules:
        found = {name: m for name, m in linears.items() if _matches(name, target)}
        if not found:
            raise LoRAError(f"LoRA target {target!r} matches no nn.Linear in the model; the layers are: {', '.join(layer_names)}")
        chosen.update(found)
    for name, linear in chosen.items():
        if id(linear.weight) in tied:
            raise LoRAError(f"{name} shares its weight with the token embedding (weight tying); it cannot be a LoRA target")
        limit = min(linear.in_features, linear.out_features)
        if config.r > limit:
            raise LoRAError(f"LoRA rank {config.r} is larger than {name} allows (min(in, out) = {limit}); use a rank from 1 to {limit}")

    untargeted = {name: m for name, m in linears.items() if name not in chosen and id(m.weight) not in tied}
    if config.quantize_base != "none":
        _check_quantizable({**chosen, **untargeted} if config.quantize_base == "all" else chosen, config.quant_block_size)

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = {}
    for name, linear in chosen.items():
        layer = build_lora_layer(linear, config)  # a LoRALinear; DoRA or on a 4-bit base if the config says so
        set_submodule(model, name, layer)
        wrapped[name] = layer
    for name, quantized in quantize_untargeted_linears(untargeted, config).items():
        set_submodule(model, name, quantized)
    return wrapped


def _check_quantizable(linears: dict[str, nn.Linear], block_size: int) -> None:
    for name, linear in linears.items():
        if linear.weight.numel() % block_size:
            raise LoRAError(f"QLoRA block size {block_size} does not divide {name}'s {linear.weight.numel()} weights; "
                            "use a block size that divides every quantized layer's weight count, such as 64")


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """{module name: LoRALinear} for every LoRA layer in the model."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
