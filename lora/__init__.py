"""LoRA from scratch (Hu et al., 2021), for any nn.Module. Depends on torch alone.

Read in this order: config.py (the hyperparameters), layer.py (the idea:
h = W x + (alpha/r) B A x), apply.py (putting it into a model), merge.py
(folding it back out), state.py (saving just A and B), parameters.py (counting).
Then the variants: scaling.py (rsLoRA), loraplus.py (LoRA+), dora.py (DoRA),
nf4.py (QLoRA's 4-bit base), and variants.py (which one a config asks for).
multi_adapter.py: several named adapters on one base, switched, disabled, mixed.
"""

from lora.apply import apply_lora, lora_layers
from lora.config import LoRAConfig
from lora.dora import DoRALinear
from lora.errors import LoRAError
from lora.layer import LoRALinear
from lora.loraplus import loraplus_parameter_groups
from lora.merge import merge_lora
from lora.nf4 import NF4Linear
from lora.multi_adapter import (MultiLoRALinear, active_adapters, adapter_names, add_adapter, delete_adapter, disable_adapters,
                                set_adapter, set_adapter_weights)
from lora.parameters import count_parameters, lora_matrix_savings, parameter_breakdown
from lora.state import load_lora_state_dict, load_lora_weights, lora_state_dict, save_lora_weights

__all__ = [
    "LoRAConfig", "LoRAError", "LoRALinear", "DoRALinear", "NF4Linear", "loraplus_parameter_groups", "apply_lora", "lora_layers", "merge_lora",
    "lora_state_dict", "load_lora_state_dict", "save_lora_weights", "load_lora_weights",
    "count_parameters", "parameter_breakdown", "lora_matrix_savings",
    "MultiLoRALinear", "add_adapter", "set_adapter", "set_adapter_weights", "disable_adapters", "delete_adapter",
    "adapter_names", "active_adapters",
]
