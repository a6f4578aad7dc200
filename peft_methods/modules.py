"""Finding modules by name, the way PEFT does: a target "k_proj" matches "blocks.0.attention.k_proj".

Shared by the methods that wrap layers (bottleneck adapters, IA3). A target
that matches nothing is an error, never a silent no-op.
"""

import torch.nn as nn

from peft_methods.errors import PeftMethodError


def matches(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def find_targets(model: nn.Module, targets, kind=nn.Linear, method: str = "") -> dict[str, nn.Module]:
    """{name: module} of every `kind` module whose name ends with one of `targets`, in model order."""
    candidates = {name: m for name, m in model.named_modules() if isinstance(m, kind)}
    chosen = {}
    for target in targets:
        found = {name: m for name, m in candidates.items() if matches(name, target)}
        if not found:
            names = ", ".join(sorted({name.rpartition(".")[2] for name in candidates}))
            raise PeftMethodError(f"{method} target {target!r} matches no {kind.__name__} in the model; the layers are: {names}")
        chosen.update(found)
    return {name: chosen[name] for name in candidates if name in chosen}


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child_name = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child_name, module)


def freeze(model: nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def trainable_state_dict(model: nn.Module, marker: str) -> dict:
    """The tensors of a method, found by a name part only its parameters have (e.g. "adapter_", "ia3_")."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if marker in name}


def load_trainable_state_dict(model: nn.Module, tensors: dict, marker: str, source: str) -> None:
    """Copy saved tensors in; the key sets and shapes must match exactly, or a PeftMethodError names the first difference."""
    expected = {name: p for name, p in model.named_parameters() if marker in name}
    if set(tensors) != set(expected):
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise PeftMethodError(f"{source} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, parameter in expected.items():
        value = tensors[name]
        if tuple(value.shape) != tuple(parameter.shape):
            raise PeftMethodError(f"{source}: {name} has shape {tuple(value.shape)}, the model needs {tuple(parameter.shape)}")
        parameter.data.copy_(value)
