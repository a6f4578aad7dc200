"""`lora_scaling`: the factor in front of B A, classic LoRA or rank-stabilized (rsLoRA).

Classic LoRA (Hu et al., 2021, section 4.1) scales the update by alpha / r.
Kalajdzievski (2023, arXiv:2312.03732) asks what happens to that update as the
rank r grows with alpha fixed. Section 3 defines an adapter gamma_r * B A as
"rank-stabilized" (Definition 3.1) when, for inputs whose entries have moments
that do not depend on r, the adapter's outputs, and the gradients flowing back
into its inputs, also have moments that do not depend on r. Theorem 3.2 (proof
in Appendix A) shows this holds if and only if gamma_r is of order 1/sqrt(r):

* with gamma_r = alpha / r those outputs and gradients collapse as r grows
  ("gradient collapse"), so, the paper argues, a higher rank learns more
  slowly instead of better;
* with gamma_r = alpha / sqrt(r) they keep their size at every rank, so
  raising r buys capacity (at training cost only; a merged layer costs the same).

That is a statement about moments (typical sizes of activations and
gradients), not a prediction of how large the trained update ends up. The
Adam "mixed signs" argument in lora/config.py is this project's own heuristic;
in this project's rank sweep (docs/results.md 4.4, three seeds) the merged
update's norm with alpha / r shrinks 1.5-1.7x from rank 1 to 64, and with
alpha / sqrt(r) it stays roughly level from rank 4 to 64.

Both agree at r = 1, so alpha means the same thing there.
"""

import math

from lora.errors import LoRAError


def lora_scaling(lora_alpha: float, r: int, use_rslora: bool = False) -> float:
    """alpha / sqrt(r) when use_rslora, else alpha / r (the factor multiplying B A)."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise LoRAError(f"LoRA rank r must be an integer of at least 1, got {r!r}")
    if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)) or not math.isfinite(lora_alpha):
        raise LoRAError(f"lora_alpha must be a finite number, got {lora_alpha!r}")
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
