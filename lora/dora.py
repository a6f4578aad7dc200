"""`DoRALinear`: weight-decomposed low-rank adaptation (Liu et al., 2024, arXiv:2402.09353).

DoRA writes a weight as a magnitude times a unit direction and trains them
apart: the magnitude directly, the direction through a LoRA update
(section 4.1, Eq. 5):

    V = W + s B A                   # (out, in), s = alpha / r; W frozen
    n = ||V|| per output feature    # (out,): the L2 norm of each row of V
    W' = m * V / n                  # (out, in); m (out,) trainable, starts at ||W|| per row
    h = W' x + b                    # the bias is left out of the decomposition

With B = 0 at the start, V = W and m = n, so W' = W: the layer starts equal to
its base, as LoRA does.

Row or column? The paper writes W as (d x k) with m of shape (1 x k) and
||.||_c a norm "across each column". Its W is laid out (in, out), the
transpose of nn.Linear.weight (out, in); the first author confirms the norm
is always taken per output feature (github.com/nbasyl/DoRA issue #1), which
is what PEFT computes, `torch.linalg.norm(W + s B A, dim=1)` on the (out, in)
weight (peft/tuners/lora/dora.py, `get_weight_norm`). So here: one norm and
one magnitude per output feature, i.e. per row.

The norm n is detached (section 4.3): it still follows V's value in the
forward pass, but backpropagation treats it as a constant. The paper shows
this changes the gradient little and saves the memory of differentiating
through the norm; the gradient of A and B then flows only through V in the
numerator.

Merging folds everything into W (W <- m * V / n), one matmul at inference as
before. To unmerge, the layer keeps the norm n (out,) it divided by: from
W' = m V / n, V = W' n / m and W = V - s B A. Storing n costs `out` floats
instead of a full copy of W; the price is that a row whose magnitude was
trained to exactly 0 cannot be recovered (unmerge refuses in that case).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from lora.errors import LoRAError
from lora.layer import LoRALinear


class DoRALinear(LoRALinear):
    def __init__(self, base: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 init_lora_weights: str = "kaiming", use_rslora: bool = False):
        super().__init__(base, r, lora_alpha, lora_dropout, init_lora_weights, use_rslora)
        with torch.no_grad():
            row_norms = torch.linalg.norm(base.weight.detach(), dim=1)  # (out,)
        # named with the lora_ prefix (PEFT: lora_magnitude_vector) so it sits with A and B
        self.lora_magnitude = nn.Parameter(row_norms.clone())  # (out,) trainable
        self.register_buffer("merged_norm", None, persistent=False)  # (out,) while merged: n used by merge()

    def adapted_weight(self) -> torch.Tensor:
        """V = W + s B A, (out, in), with A and B in the autograd graph."""
        return self.base.weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight)  # (out, in)

    def weight_norm(self) -> torch.Tensor:
        """n = ||W + s B A|| per output feature, (out,), detached (paper, section 4.3)."""
        with torch.no_grad():
            return torch.linalg.norm(self.adapted_weight(), dim=1)  # (out,)

    def merged_weight(self) -> torch.Tensor:
        """W' = m * V / n, (out, in): the weight the layer computes with."""
        scale = self.lora_magnitude / self.weight_norm()  # (out,)
        return scale[:, None] * self.adapted_weight()  # (out, 1) * (out, in)

    def delta_weight(self) -> torch.Tensor:
        """W' - W, (out, in): what merge() adds to the base weight (computed from an unmerged layer)."""
        if self.merged:
            raise LoRAError("delta_weight() of a merged DoRALinear would use the merged weight as W; call unmerge() first")
        return self.merged_weight() - self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return super().forward(x)  # base(x) with the merged weight (and LoRALinear's warning when training)
        # h = W x + b + (m/n - 1) W d(x) + (m/n) s B A d(x), d = dropout (identity when p = 0 or in eval).
        # Without dropout this is exactly (m/n)(W + s B A) x + b. With dropout we do as PEFT does
        # (huggingface/peft pull 1474): the frozen path W x + b sees the clean input, as in plain LoRA,
        # and only the part DoRA adds to it sees the dropped-out input; the bias is never rescaled.
        dropped = self.lora_dropout(x)
        scale = self.lora_magnitude / self.weight_norm()  # (out,): m / n, n detached
        lora_out = self.lora_B(self.lora_A(dropped)) * self.scaling  # (..., out)
        return self.base(x) + (scale - 1) * F.linear(dropped, self.base.weight) + scale * lora_out

    @torch.no_grad()
    def merge(self) -> None:
        """W <- m * (W + s B A) / ||W + s B A||, keeping n for unmerge(). A second call does nothing."""
        if self.merged:
            return
        norm = self.weight_norm()  # (out,)
        merged = (self.lora_magnitude / norm)[:, None] * self.adapted_weight()  # (out, in)
        self.base.weight.copy_(merged)
        self.merged_norm = norm
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W' n / m - s B A. Does nothing on a layer that is not merged."""
        if not self.merged:
            return
        if (self.lora_magnitude == 0).any():
            raise LoRAError("cannot unmerge a DoRALinear with a zero magnitude entry (that row's direction is lost); "
                            "keep a copy of the base weight before merge() if you need to undo it")
        adapted = self.base.weight * (self.merged_norm / self.lora_magnitude)[:, None]  # V, (out, in)
        self.base.weight.copy_(adapted - self.scaling * (self.lora_B.weight @ self.lora_A.weight))
        self.merged_norm = None
        self.merged = False

    def extra_repr(self) -> str:
        return super().extra_repr() + ", dora=True"
