"""Which LoRA layer a config asks for: plain LoRA, rsLoRA, DoRA, and QLoRA's 4-bit base.

`apply_lora` calls `build_lora_layer` for every targeted nn.Linear. The
variants differ from plain LoRA in one place each:

* rsLoRA (`use_rslora`): only the scaling, alpha / sqrt(r) (lora/scaling.py).
* DoRA (`use_dora`): a DoRALinear, with a trainable magnitude (lora/dora.py).
* QLoRA (`quantize_base`): the frozen base is stored as NF4 codes before it is
  wrapped (lora/nf4.py); A and B still train in float32. With "all", the
  linear layers LoRA does not target are quantized too.
* LoRA+ (`loraplus_lr_ratio`) changes no layer, only the optimizer's
  parameter groups (lora/loraplus.py).
"""

import torch.nn as nn

from lora.config import LoRAConfig
from lora.dora import DoRALinear
from lora.layer import LoRALinear
from lora.nf4 import NF4Linear


def build_lora_layer(linear: nn.Linear, config: LoRAConfig) -> LoRALinear:
    """Wrap one frozen nn.Linear as the config says; the wrapped layer starts equal to `linear` (or its NF4 copy)."""
    base = linear
    if config.quantize_base != "none":
        base = NF4Linear.from_linear(linear, config.quant_block_size, config.double_quant)
    layer_class = DoRALinear if config.use_dora else LoRALinear
    return layer_class(base, config.r, config.lora_alpha, config.lora_dropout, config.init_lora_weights, config.use_rslora)


def quantize_untargeted_linears(linears: dict[str, nn.Linear], config: LoRAConfig) -> dict[str, NF4Linear]:
    """With quantize_base="all": NF4 copies of the linear layers LoRA does not wrap (frozen, no adapter)."""
    if config.quantize_base != "all":
        return {}
    return {name: NF4Linear.from_linear(linear, config.quant_block_size, config.double_quant) for name, linear in linears.items()}
