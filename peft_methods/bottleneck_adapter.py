"""Bottleneck adapters (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP", section 2.1, figure 2).

A small two-layer network is inserted after a sub-layer's output projection,
before the residual addition, and after the feed-forward layer's:

    h = sublayer(x)                              (d features)
    adapter(h) = h + W_up · f(W_down · h + b_down) + b_up
                 W_down: (m, d), W_up: (d, m), m << d (the bottleneck, `adapter_size`)

In MiniGPT's pre-LayerNorm block the targets are `o_proj` (after attention)
and `down_proj` (after the feed-forward layer), so a block becomes

    x = x + adapter_1(o_proj(attention(LN(x))))
    x = x + adapter_2(down_proj(GELU(up_proj(LN(x)))))

The paper also trains the LayerNorms' scales and shifts (section 2.1); here
they stay frozen, so the base stays bit-identical and the adapters alone are
the task. W_up starts at zero, so adapter(h) = h at step 0 and
the model starts exactly equal to the base (the paper's near-identity
initialisation, taken to exact identity as LoRA does with B).

Trainable parameters per adapter: 2·m·d + m + d (the paper's 2md + d + m);
with two per block, 2 · n_layer · (2·m·d + m + d).

Why they cannot be merged: f sits between W_down and W_up, so the two layers
are no linear map to fold into o_proj; they run after it, one after the other,
at every generated token (the latency LoRA avoids; Hu et al., 2021, section 3).
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from peft_methods.errors import PeftMethodError
from peft_methods.modules import find_targets, freeze, set_submodule

ADAPTER_MARKER = "adapter_"  # every adapter parameter's name holds it: adapter_down, adapter_up


@dataclass
class BottleneckAdapterConfig:
    adapter_size: int = 8  # m, the bottleneck width
    target_modules: tuple[str, ...] = ("o_proj", "down_proj")

    def validate(self) -> "BottleneckAdapterConfig":
        if isinstance(self.adapter_size, bool) or not isinstance(self.adapter_size, int) or self.adapter_size < 1:
            raise PeftMethodError(f"adapter_size must be a positive integer, got {self.adapter_size!r}; try 8")
        if not self.target_modules:
            raise PeftMethodError("target_modules is empty; name the layers the adapters follow, e.g. o_proj,down_proj")
        return self

    def to_dict(self) -> dict:
        return {**asdict(self), "target_modules": list(self.target_modules)}


class AdaptedOutput(nn.Module):
    """A frozen layer followed by a bottleneck adapter with its own residual: h + up(f(down(h)))."""

    def __init__(self, base: nn.Linear, adapter_size: int):
        super().__init__()
        self.base = base
        d = base.out_features
        self.adapter_down = nn.Linear(d, adapter_size)  # W_down, b_down: PyTorch's default init
        self.adapter_up = nn.Linear(adapter_size, d)  # W_up, b_up: zero, so the adapter starts as the identity
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)  # (B, T, d)
        return h + self.adapter_up(F.gelu(self.adapter_down(h)))  # (B, T, m) inside, (B, T, d) out


def apply_bottleneck_adapters(model: nn.Module, config: BottleneckAdapterConfig) -> dict[str, AdaptedOutput]:
    """Freeze the model, put an adapter after every target layer; returns {name: AdaptedOutput}."""
    config.validate()
    targets = find_targets(model, config.target_modules, method="adapter")
    freeze(model)
    wrapped = {}
    for name, linear in targets.items():
        wrapped[name] = AdaptedOutput(linear, config.adapter_size).to(linear.weight.device)
        set_submodule(model, name, wrapped[name])
    return wrapped


def adapter_parameter_count(n_embd: int, adapter_size: int, n_adapters: int) -> int:
    """The docstring's formula: (2·m·d + m + d) per adapter."""
    return n_adapters * (2 * adapter_size * n_embd + adapter_size + n_embd)
