"""Why an unmerged LoRA model is slower: operations counted, arithmetic counted, time measured.

Each LoRALinear adds four small operations (A, B, the scaling, the addition) to
its base layer's one. On a 64-wide model each operation costs mostly its fixed
dispatch overhead, so the time per forward pass follows the number of
operations, not the arithmetic. Generation here has no key/value cache: every
new token re-runs the whole context, so the same ratio holds per token.
"""

import copy
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from lora import LoRAConfig, apply_lora, merge_lora
from minigpt.checkpoint import load_model_dir


def top_level_operations(model, x: torch.Tensor) -> int:
    """aten operations a forward pass dispatches, not counting those called inside another aten operation."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as trace:
        model(x)
    return sum(1 for e in trace.events() if e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::")))


def matmul_multiply_adds(model, lora_config: LoRAConfig | None) -> int:
    """Multiply-adds per token in the linear layers and the output head (attention scores left out)."""
    c = model.config
    base = c.n_layer * (4 * c.n_embd * c.n_embd + 2 * c.n_embd * 4 * c.n_embd) + c.n_embd * c.vocab_size
    if lora_config is None:
        return base
    adapted = c.n_layer * len(lora_config.target_modules)
    return base + adapted * lora_config.r * 2 * c.n_embd  # q/k/v/o are n_embd x n_embd: r * (in + out)


def median_milliseconds(model, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure_overhead(pretrained: str, context: int = 32, repeats: int = 200) -> dict:
    base, _ = load_model_dir(pretrained, hint="run python train_pretrain.py first")
    config = LoRAConfig()
    unmerged = copy.deepcopy(base)
    apply_lora(unmerged, config)
    torch.manual_seed(0)
    for layer in (m for m in unmerged.modules() if hasattr(m, "lora_B")):
        torch.nn.init.normal_(layer.lora_B.weight, std=0.01)  # a non-zero update, as after training
    merged = merge_lora(copy.deepcopy(unmerged))
    context = min(context, base.config.block_size)
    x = torch.randint(0, base.config.vocab_size, (1, context))  # one sequence, as in generation
    models = {"base": (base, None), "LoRA unmerged": (unmerged, config), "LoRA merged": (merged, None)}
    return {name: {"operations": top_level_operations(model.eval(), x), "multiply_adds_per_token": matmul_multiply_adds(model, cfg),
                   "median_ms_per_forward": median_milliseconds(model, x, repeats)} for name, (model, cfg) in models.items()}
