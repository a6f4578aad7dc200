"""LoRA from scratch: low-rank adapters for MiniGPT's attention projections (Hu et al., 2021)."""

from lora.apply import apply_lora, load_lora_state_dict, lora_layers, lora_state_dict
from lora.config import LoRAConfig
from lora.layer import LoRALinear
from lora.merge import merge_lora
from lora.parameters import count_parameters, lora_matrix_savings, parameter_breakdown

__all__ = [
    "LoRAConfig", "LoRALinear", "apply_lora", "lora_layers", "lora_state_dict", "load_lora_state_dict",
    "merge_lora", "count_parameters", "parameter_breakdown", "lora_matrix_savings",
]
