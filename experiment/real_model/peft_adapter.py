"""The adapter of a Hugging Face model written in PEFT's layout, so `PeftModel.from_pretrained` loads it.

PEFT's `save_pretrained` writes two files:
  adapter_config.json         peft_type "LORA", task_type "CAUSAL_LM", r, lora_alpha, target_modules, ...
  adapter_model.safetensors   every A and B under "base_model.model.<module path>.lora_A.weight" / ".lora_B.weight"

PEFT wraps the model twice (PeftModel -> LoraModel -> the model), hence the
"base_model.model." prefix; the adapter's own name ("default") is left out of
the saved keys. This project's LoRA layers sit at the very module paths PEFT's
do and name their matrices lora_A and lora_B as PEFT does, so the keys are the
project's own with the prefix added: for a Llama model,
"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" (r, in).
DoRA's magnitude, `lora_magnitude` here, is PEFT's "lora_magnitude_vector".
"""

import json
from pathlib import Path

import torch

from lora import LoRAConfig, apply_lora, load_lora_state_dict, lora_state_dict
from minigpt.plumbing.errors import UserError

PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
RENAMED = {"lora_magnitude": "lora_magnitude_vector"}  # this project's name -> PEFT's, for the last part of a key


def peft_key(key: str) -> str:
    module, _, name = key.rpartition(".")
    if name in RENAMED:
        key = f"{module}.{RENAMED[name]}"
    return PREFIX + key


def project_key(key: str) -> str:
    """The inverse of peft_key: PEFT's saved key -> the key of lora_state_dict."""
    if not key.startswith(PREFIX):
        raise UserError(f"adapter key {key!r} does not start with {PREFIX!r}; it was not saved by PEFT's save_pretrained")
    key = key[len(PREFIX):]
    module, _, name = key.rpartition(".")
    for ours, theirs in RENAMED.items():
        if name == theirs:
            return f"{module}.{ours}"
    return key


def peft_config(config: LoRAConfig, base_model: str) -> dict:
    """PEFT's LoraConfig fields for this adapter: the ones loading reads, and PEFT's defaults for the rest."""
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model, "revision": None,
        "inference_mode": True, "r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
        "target_modules": list(config.target_modules), "bias": "none", "fan_in_fan_out": False,
        "init_lora_weights": True if config.init_lora_weights == "kaiming" else "gaussian",
        "modules_to_save": None, "use_rslora": config.use_rslora, "use_dora": config.use_dora,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
    }


def peft_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's keys (contiguous, as safetensors requires)."""
    return {peft_key(key): value.contiguous() for key, value in lora_state_dict(model).items()}


def write_peft_adapter(model: torch.nn.Module, config: LoRAConfig, base_model: str, directory: Path) -> None:
    """Write the two PEFT files into `directory` (the caller makes the directory appear atomically)."""
    from safetensors.torch import save_file

    (directory / PEFT_CONFIG).write_text(json.dumps(peft_config(config, base_model), indent=2) + "\n", encoding="utf-8")
    save_file(peft_state_dict(model), str(directory / PEFT_WEIGHTS), metadata={"format": "pt"})


def read_peft_adapter(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json as a dict, tensors under this project's keys) of a PEFT adapter directory."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (PEFT_CONFIG, PEFT_WEIGHTS):
        if not (directory / name).is_file():
            raise UserError(f"{directory} has no {name}; it is not a PEFT adapter directory")
    settings = json.loads((directory / PEFT_CONFIG).read_text(encoding="utf-8"))
    return settings, {project_key(key): value for key, value in load_file(str(directory / PEFT_WEIGHTS)).items()}


def config_from_peft(settings: dict) -> LoRAConfig:
    """The LoRAConfig of a PEFT adapter_config.json; settings this project does not implement are refused, not ignored."""
    unsupported = [key for key in ("fan_in_fan_out", "lora_bias", "rank_pattern", "alpha_pattern", "layers_to_transform",
                                   "modules_to_save", "trainable_token_indices") if settings.get(key)]
    if isinstance(settings.get("target_modules"), str):
        unsupported.append("target_modules as a regular expression")
    if settings.get("peft_type") != "LORA" or settings.get("bias", "none") != "none" or unsupported:
        raise UserError(f"this PEFT adapter uses settings lora/ does not implement ({unsupported or 'peft_type or bias'}); "
                        "load it with peft instead")
    return LoRAConfig(r=settings["r"], lora_alpha=settings["lora_alpha"], lora_dropout=settings.get("lora_dropout", 0.0),
                      target_modules=sorted(settings["target_modules"]),
                      init_lora_weights="gaussian" if settings.get("init_lora_weights") == "gaussian" else "kaiming",
                      use_rslora=bool(settings.get("use_rslora")), use_dora=bool(settings.get("use_dora"))).validate()


def apply_peft_adapter(model: torch.nn.Module, directory: str | Path) -> LoRAConfig:
    """Put a PEFT adapter onto `model` with this project's lora/: apply_lora with its config, then its A, B (and magnitude)."""
    settings, tensors = read_peft_adapter(directory)
    config = config_from_peft(settings)
    apply_lora(model, config)
    load_lora_state_dict(model, tensors, source=str(directory))
    return config
