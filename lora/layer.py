"""`LoRALinear`: a frozen nn.Linear plus a trainable low-rank update (Hu et al., 2021).

                 +-----------------------+
     x --------> |  W (frozen), bias     | -----------------+
     |           +-----------------------+                  |
     |                                                      v
     +-> dropout -> A (r x in) -> B (out x r) -> * alpha/r -> (+) -> h

    h = W x + b + (alpha / r) * B A dropout(x)

A is (r, in_features) and B is (out_features, r), so the update to the weight
is delta_W = (alpha / r) * B @ A with no transposes (the loralib/PEFT layout).
B starts at zero, so at step 0 the layer computes exactly what the base layer
did: training starts from the pretrained model, not from a perturbed one
(paper, section 4.1). A starts random so that gradients reach B.

`merge()` folds the update into W once (W <- W + (alpha/r) B A), after which
the layer costs exactly one matmul, as before LoRA: no added latency.
`unmerge()` subtracts it again. A `merged` flag makes both idempotent.
"""

import math
import warnings

import torch
import torch.nn as nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0, init_lora_weights: str = "kaiming",
                 use_rslora: bool = False):
        super().__init__()
        self.base = base  # composition: the original layer, kept whole and frozen
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.r = r
        self.lora_alpha = lora_alpha
        self.scaling = lora_alpha / r  # the paper's scaling (section 4.1)
        if use_rslora:  # rsLoRA: alpha / sqrt(r), so the update keeps its size as r grows (lora/scaling.py says why)
            self.scaling = lora_alpha / math.sqrt(r)
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Linear(base.in_features, r, bias=False, device=device, dtype=dtype)  # weight (r, in)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, device=device, dtype=dtype)  # weight (out, r)
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_lora_parameters(init_lora_weights)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @torch.no_grad()
    def reset_lora_parameters(self, init_lora_weights: str = "kaiming") -> None:
        if init_lora_weights == "kaiming":
            # nn.Linear's own default init, as loralib and PEFT use for A
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        elif init_lora_weights == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1.0 / self.r)
        else:
            raise ValueError(f"unknown init_lora_weights {init_lora_weights!r}")
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the adapted layer starts equal to the base layer

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) * B @ A, shaped like the base weight (out_features, in_features)."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            if self.training and torch.is_grad_enabled():
                warnings.warn("training a merged LoRALinear: A and B get no gradient; call unmerge() first", stacklevel=2)
            return self.base(x)  # the update already lives inside W
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(self.lora_dropout(x)))

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha/r) B A. A second call does nothing."""
        if self.merged:
            return
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha/r) B A. Does nothing on a layer that is not merged."""
        if not self.merged:
            return
        self.base.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:g}, merged={self.merged}"
