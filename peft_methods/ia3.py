"""IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning", section 3.3): learned vectors that rescale keys, values and the feed-forward hidden activation.

    attention:     softmax(Q (l_k ⊙ K)ᵀ / √d_h) (l_v ⊙ V)
    feed-forward:  W_2 (l_ff ⊙ γ(W_1 x))

l_k, l_v ∈ R^d and l_ff ∈ R^(4d) per block (MiniGPT: d = n_embd, hidden 4d),
all initialised to ones, so the model starts exactly equal to the base.

PEFT's names and placement: `target_modules` are the layers IA3 touches; for
the ones also listed in `feedforward_modules` the vector scales the layer's
INPUT (l_ff before down_proj is the hidden activation above), for the others
its OUTPUT (l_k after k_proj: l_k ⊙ (W_k x + b_k), bias included).

Trainable parameters: Σ over targets of out_features (attention) or
in_features (feed-forward); for k_proj, v_proj and down_proj:
n_layer · (d + d + 4d) = 6 · n_layer · d.

Merging (no latency after training): an output scale is a row scaling,
W' = diag(l) W and b' = l ⊙ b; an input scale a column scaling, W' = W diag(l),
the bias unchanged.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from peft_methods.errors import PeftMethodError
from peft_methods.modules import find_targets, freeze, matches, set_submodule

IA3_MARKER = "ia3_"


@dataclass
class IA3Config:
    target_modules: tuple[str, ...] = ("k_proj", "v_proj", "down_proj")
    feedforward_modules: tuple[str, ...] = ("down_proj",)

    def validate(self) -> "IA3Config":
        if not self.target_modules:
            raise PeftMethodError("target_modules is empty; IA3 needs layers to rescale, e.g. k_proj,v_proj,down_proj")
        extra = [m for m in self.feedforward_modules if m not in self.target_modules]
        if extra:
            raise PeftMethodError(f"feedforward_modules {extra} must also be in target_modules {list(self.target_modules)} (as in PEFT)")
        return self

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}


class IA3Linear(nn.Module):
    """A frozen nn.Linear with a learned scale on its output (attention) or its input (feed-forward)."""

    def __init__(self, base: nn.Linear, is_feedforward: bool):
        super().__init__()
        self.base = base
        self.is_feedforward = is_feedforward
        size = base.in_features if is_feedforward else base.out_features
        self.ia3_scale = nn.Parameter(torch.ones(size, device=base.weight.device))  # ones: the identity at step 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_feedforward:
            return self.base(x * self.ia3_scale)  # l_ff ⊙ hidden activation, then W_2
        return self.base(x) * self.ia3_scale  # l ⊙ (W x + b)

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """A plain nn.Linear computing the same function (a new layer; the base is left as it is)."""
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                           device=self.base.weight.device, dtype=self.base.weight.dtype)
        if self.is_feedforward:
            merged.weight.copy_(self.base.weight * self.ia3_scale[None, :])  # W diag(l): scale columns
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        else:
            merged.weight.copy_(self.base.weight * self.ia3_scale[:, None])  # diag(l) W: scale rows
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias * self.ia3_scale)
        return merged


def apply_ia3(model: nn.Module, config: IA3Config) -> dict[str, IA3Linear]:
    """Freeze the model and wrap every target in IA3Linear; returns {name: IA3Linear}."""
    config.validate()
    targets = find_targets(model, config.target_modules, method="IA3")
    freeze(model)
    wrapped = {}
    for name, linear in targets.items():
        feedforward = any(matches(name, f) for f in config.feedforward_modules)
        wrapped[name] = IA3Linear(linear, feedforward)
        set_submodule(model, name, wrapped[name])
    return wrapped


def merge_ia3(model: nn.Module) -> nn.Module:
    """Replace every IA3Linear by its merged nn.Linear, in place; returns the model (a plain one again)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, IA3Linear)}
    if not layers:
        raise PeftMethodError("the model has no IA3 layers to merge")
    for name, layer in layers.items():
        set_submodule(model, name, layer.merged_linear())
    return model


def ia3_parameter_count(n_layer: int, n_embd: int) -> int:
    """The docstring's formula for the default targets k_proj, v_proj (out d each) and down_proj (in 4d)."""
    return n_layer * (n_embd + n_embd + 4 * n_embd)
