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

Coursework: every `raise NotImplementedError` below marks a TODO for you.
Check your work with `python -m coursework.grade` (see coursework/ASSIGNMENT.md).
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
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.merged = False
        # TODO 1 (task 1a):
        #   * freeze every parameter of self.base (weight and bias): requires_grad False
        #   * self.scaling = the factor the update is multiplied by (a float); with use_rslora=True it is
        #     alpha / sqrt(r) instead (rsLoRA, lora/scaling.py explains why; the grader checks both)
        #   * self.lora_A = nn.Linear without bias whose weight is (r, in_features)
        #     self.lora_B = nn.Linear without bias whose weight is (out_features, r)
        #     both on the base weight's device and with its dtype (a float64 base gives float64 A and B)
        # then delete the raise; the last line sets A's and B's starting values.
        raise NotImplementedError("not implemented yet: LoRALinear.__init__ (freeze the base; A (r, in), B (out, r); scaling alpha/r)")
        self.reset_lora_parameters(init_lora_weights)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @torch.no_grad()
    def reset_lora_parameters(self, init_lora_weights: str = "kaiming") -> None:
        if init_lora_weights not in ("kaiming", "gaussian"):
            raise ValueError(f"unknown init_lora_weights {init_lora_weights!r}")
        # TODO 2 (task 1b): the starting values of A (r, in) and B (out, r).
        #   * "kaiming": A as nn.Linear initialises its own weight (kaiming-uniform with a=math.sqrt(5))
        #   * "gaussian": A normal with std 1 / r
        #   * B: which value makes the layer start exactly equal to its base? (ASSIGNMENT.md, "Why B = 0")
        raise NotImplementedError("not implemented yet: LoRALinear.reset_lora_parameters (A random, B = 0)")

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) * B @ A, shaped like the base weight (out_features, in_features)."""
        # TODO 3 (task 1c): a tensor (out_features, in_features) that keeps A's and B's autograd graph
        #   (a loss computed from it must send gradients to A and B: no .detach(), no .data).
        raise NotImplementedError("not implemented yet: LoRALinear.delta_weight ((alpha/r) B @ A, shape (out, in))")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            if self.training and torch.is_grad_enabled():
                warnings.warn("training a merged LoRALinear: A and B get no gradient; call unmerge() first", stacklevel=2)
            # TODO 4a (task 1d): the update already lives inside W after merge(). What is h now?
            raise NotImplementedError("not implemented yet: LoRALinear.forward, merged (h = W x + b)")
        # TODO 4b (task 1d): x is (..., in_features); return h (..., out_features):
        #   h = W x + b + (alpha/r) B A dropout(x)
        #   dropout (self.lora_dropout) acts on the LoRA branch's input only, never on W x + b.
        raise NotImplementedError("not implemented yet: LoRALinear.forward (h = W x + b + (alpha/r) B A dropout(x))")

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha/r) B A. A second call does nothing."""
        # TODO 5 (task 1e): change self.base.weight in place (out, in); set self.merged.
        raise NotImplementedError("not implemented yet: LoRALinear.merge (W <- W + (alpha/r) B A, once)")

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha/r) B A. Does nothing on a layer that is not merged."""
        # TODO 6 (task 1e): the exact inverse of merge(); set self.merged.
        raise NotImplementedError("not implemented yet: LoRALinear.unmerge (W <- W - (alpha/r) B A, only when merged)")

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:g}, merged={self.merged}"
