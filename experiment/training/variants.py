"""The LoRA variants as fine-tuning runs: rsLoRA, LoRA+, DoRA and QLoRA beside plain LoRA.

`python train_finetune.py --method variants` trains each one with the same
data, steps, seed, rank, alpha, targets and learning rate as the plain LoRA
run, so each differs from it in one idea only, and saves each under
variants/<name>/ (adapter/ and merged/). compare.py adds a row per variant.
A single variant is also `--method lora` with its flag (--use-rslora,
--loraplus-lr-ratio 16, --use-dora, --quantize-base targets).
"""

import dataclasses
import math

import torch

from lora import LoRAConfig, NF4Linear

# name: (what changes in LoRAConfig, label prefix); the prefix is variant_prefix of that config
VARIANTS = {
    "rslora": ({"use_rslora": True}, "rsLoRA"),
    "loraplus": ({"loraplus_lr_ratio": 16.0}, "LoRA+ ratio 16"),  # the ratio Hayou et al. suggest as a default
    "dora": ({"use_dora": True}, "DoRA"),
    "qlora": ({"quantize_base": "targets"}, "QLoRA"),
}


def variant_config(config: LoRAConfig, name: str) -> LoRAConfig:
    """`config` with one variant switched on (the others as they were)."""
    return dataclasses.replace(config, **VARIANTS[name][0]).validate()


def variant_prefix(config: LoRAConfig) -> str:
    """"LoRA", or the names of the variants a config switches on, e.g. "LoRA+ ratio 4 + DoRA".

    Every variant is named whatever its setting: a LoRA+ run carries its ratio
    (any ratio, not only the default 16), QLoRA covers a 4-bit base of the
    targets or of every linear layer.
    """
    names = []
    if config.use_rslora:
        names.append("rsLoRA")
    if config.loraplus_lr_ratio is not None:
        names.append(f"LoRA+ ratio {config.loraplus_lr_ratio:g}")
    if config.use_dora:
        names.append("DoRA")
    if config.quantize_base != "none":
        names.append("QLoRA")
    return " + ".join(names) if names else "LoRA"


@torch.no_grad()
def quantization_report(model) -> dict:
    """What a 4-bit base costs against float32, measured from the NF4 layers the model holds.

    Bytes are those of the tensors actually held (codes, scales, bias). Bits
    per weight count codes and scales, with the double-quantized scales as
    held and, for comparison, with one float32 absmax per block instead.
    """
    layers = [m for m in model.modules() if isinstance(m, NF4Linear)]
    if not layers:
        return {}
    weights = sum(m.in_features * m.out_features for m in layers)
    held = sum(m.storage_bytes() for m in layers)
    biases = sum(m.bias.numel() * 4 for m in layers if m.bias is not None)
    blocks = sum(m.in_features * m.out_features // m.block_size for m in layers)
    without_dq_bytes = weights // 2 + blocks * 4  # 4-bit codes + one float32 absmax per block
    return {
        "quantized_layers": len(layers),
        "quantized_weights": weights,
        "float32_bytes": weights * 4 + biases,
        "nf4_bytes": held,
        "bits_per_weight": 8 * (held - biases) / weights,
        "bits_per_weight_without_double_quant": 8 * without_dq_bytes / weights,
        "double_quant": all(m.double_quant for m in layers),
        "block_size": layers[0].block_size,
    }


@torch.no_grad()
def weight_error(float_linears: dict, model) -> dict:
    """Relative Frobenius error ||W - W_nf4|| / ||W|| over every quantized layer, and the largest absolute error."""
    modules = dict(model.named_modules())
    squared_error, squared_norm, worst = 0.0, 0.0, 0.0
    for name, linear in float_linears.items():
        quantized = modules[name]
        quantized = getattr(quantized, "base", quantized)  # a LoRA layer wraps the NF4 base
        if not isinstance(quantized, NF4Linear):
            continue
        difference = (linear.weight.detach().cpu() - quantized.dequantized_weight().cpu()).double()
        squared_error += difference.pow(2).sum().item()
        squared_norm += linear.weight.detach().cpu().double().pow(2).sum().item()
        worst = max(worst, difference.abs().max().item())
    return {"relative_weight_error": math.sqrt(squared_error / squared_norm) if squared_norm else 0.0,
            "max_abs_weight_error": worst}
