"""The adapter's tensors: just A and B (and DoRA's magnitude), as a state dict, in memory or in a file.

An adapter is tiny because it stores nothing else: for every LoRA layer
`<layer>.lora_A.weight` (r, in) and `<layer>.lora_B.weight` (out, r), the keys
PEFT and loralib use. Loading insists on exactly the same key set and shapes,
so an adapter made with other targets or another rank fails loudly instead of
half-loading. Files are read with `torch.load(..., weights_only=True)`, which
refuses pickled code.
"""

import pickle
from pathlib import Path

import torch
import torch.nn as nn

from lora.apply import lora_layers
from lora.errors import LoRAError


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Exactly the adapter's own tensors: every parameter of a LoRA layer whose name starts with "lora_".

    For plain LoRA that is "<layer>.lora_A.weight" (r, in) and "<layer>.lora_B.weight"
    (out, r); a DoRA layer adds "<layer>.lora_magnitude" (out,). The frozen base is never included.
    """
    state = {}
    for name, layer in lora_layers(model).items():
        for parameter_name, parameter in layer.named_parameters():
            if parameter_name.startswith("lora_"):
                state[f"{name}.{parameter_name}"] = parameter.detach().cpu().clone()
    return state


def load_lora_state_dict(model: nn.Module, state: dict, source: str = "adapter") -> None:
    """Copy the adapter's tensors in; the key sets, shapes and dtypes must fit exactly."""
    if not isinstance(state, dict) or not all(torch.is_tensor(v) and v.is_floating_point() for v in state.values()):
        raise LoRAError(f"{source} is not a state dict of floating-point tensors")
    expected = lora_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise LoRAError(
            f"{source} does not fit this model: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}; was it trained with other target modules or another variant?"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise LoRAError(f"{source}: {key} has shape {tuple(tensor.shape)}, the model expects "
                            f"{tuple(expected[key].shape)}; was it trained with another rank?")
        target = model.get_parameter(key)
        with torch.no_grad():
            target.copy_(tensor.to(target.device, target.dtype))


def save_lora_weights(model: nn.Module, path: str | Path) -> None:
    """Write the A and B tensors of `model` to one file (the caller makes the write atomic if it needs to)."""
    torch.save(lora_state_dict(model), path)


def load_lora_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an A/B state dict written by save_lora_weights; a LoRAError names the file if it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise LoRAError(f"LoRA weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" in str(error).lower():  # a pickled function or class: code, which weights_only never runs
            raise LoRAError(f"{path} holds more than plain tensors (weights_only=True refused it); "
                            "only load adapter files you trust, or write them again") from None
        raise LoRAError(f"{path} is corrupted (not a tensor file torch can read)") from None
    except Exception as error:  # a damaged file fails in many ways (zip, storage): all mean "corrupted"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LoRAError(f"{path} is corrupted ({first_line})") from None
    if not isinstance(state, dict):
        raise LoRAError(f"{path} is not a state dict of tensors")
    for key, value in state.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise LoRAError(f"{path}: {key} is not a floating-point tensor")
        if not torch.isfinite(value).all():
            raise LoRAError(f"{path}: {key} holds NaN or infinite values")
    return state
