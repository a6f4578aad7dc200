"""`LoRAConfig`: the hyperparameters of a LoRA adapter, named as PEFT names them.

* r (rank): the inner size of the low-rank update B A. The paper's Table 6
  (Hu et al., 2021, section 7.2) finds rank 1 to 8 already enough on GPT-3
  for its tasks; rank 4 on this 64-wide model keeps each update at
  4 * (64 + 64) = 512 parameters instead of 64 * 64 = 4,096.
* lora_alpha: the update is scaled by lora_alpha / r (paper, section 4.1).
  alpha is FIXED, whatever the rank, as in the paper (it sets alpha to the
  first r it tries and does not tune it) and in PEFT; the default 8 gives
  scaling 2 at the default rank 4. Dividing by r does not keep the update's
  size constant across ranks. Two different arguments say so:
  - Kalajdzievski's result (2023, arXiv:2312.03732, section 3, Definition
    3.1 and Theorem 3.2): for the moments of the adapter's outputs, and of
    the gradients it sends back to its inputs, to stay of order 1 as r grows,
    the factor must be of order 1/sqrt(r); alpha / r makes them collapse at
    high rank. rsLoRA scales by alpha / sqrt(r) (lora/scaling.py).
  - This project's own heuristic, not the paper's: under Adam each entry of
    A and B moves by about the learning rate per step whatever r is, the r
    terms of each entry of B A add up with mixed signs, so B A grows about
    like sqrt(r) and (alpha / r) B A would shrink like 1/sqrt(r), 8x from
    rank 1 to 64. This project's rank sweep finds far less: the norm of the
    merged update falls from 42.4 at rank 1 to 26.5 at rank 64 on average,
    1.5x to 1.7x on each of three seeds (`python experiments.py rank`,
    docs/results.md section 4.4).
  alpha and the learning rate are related knobs, not interchangeable ones:
  the paper (section 4.1) says tuning alpha is roughly like tuning the rate
  only if the initialisation is scaled to match, which this project does not
  do, and AdamW's decoupled weight decay is multiplied by the rate, not by
  alpha. Tune the rate; leave alpha fixed unless you are studying it.
* lora_dropout: dropout on the input of the LoRA branch only (as in loralib and
  PEFT); the frozen path never sees it.
* target_modules: nn.Linear layers whose name ends with one of these are
  adapted. The paper adapts the attention projections (section 4.2).
* init_lora_weights: how A starts ("kaiming", the default, is the
  kaiming-uniform init of nn.Linear that loralib and PEFT use; "gaussian" is the
  paper's normal init, here with std 1/r as in PEFT). B always starts at zero.
"""

import math
from dataclasses import asdict, dataclass, field, fields

from lora.errors import LoRAError
from lora.scaling import lora_scaling

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
A_INITS = ("kaiming", "gaussian")
QUANTIZE_CHOICES = ("none", "targets", "all")
REQUIRED_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "init_lora_weights")


@dataclass
class LoRAConfig:
    r: int = 4
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0  # PEFT's default; the toy domain needs no extra regularisation
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    init_lora_weights: str = "kaiming"
    # The variants (each off by default; lora/scaling.py, lora/dora.py, lora/loraplus.py, lora/nf4.py):
    use_rslora: bool = False  # rsLoRA: scale by alpha / sqrt(r) instead of alpha / r
    use_dora: bool = False  # DoRA: a trainable magnitude per output feature, LoRA on the direction
    loraplus_lr_ratio: float | None = None  # LoRA+: B learns this many times faster than A (optimizer only)
    quantize_base: str = "none"  # QLoRA: "targets" or "all" linear layers stored as 4-bit NF4
    quant_block_size: int = 64  # QLoRA: weights per absmax block
    double_quant: bool = True  # QLoRA: quantize the block scales again, to 8 bits

    @property
    def scaling(self) -> float:
        return lora_scaling(self.lora_alpha, self.r, self.use_rslora)

    def validate(self) -> "LoRAConfig":
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise LoRAError(f"LoRA rank r must be an integer of at least 1, got {self.r!r}")
        for name in ("lora_alpha", "lora_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise LoRAError(f"{name} must be a finite number, got {value!r}")
        if not isinstance(self.target_modules, (list, tuple)) or not all(isinstance(t, str) for t in self.target_modules):
            raise LoRAError(f"target_modules must be a list of layer names, got {self.target_modules!r}")
        if not self.lora_alpha > 0:
            raise LoRAError(f"lora_alpha must be greater than 0, got {self.lora_alpha}; try lora_alpha={2 * self.r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise LoRAError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            raise LoRAError("target_modules is empty; name at least one layer, e.g. q_proj")
        if self.init_lora_weights not in A_INITS:
            raise LoRAError(f"init_lora_weights must be one of {', '.join(A_INITS)}, got {self.init_lora_weights!r}")
        self._validate_variants()
        return self

    def _validate_variants(self) -> None:
        for name in ("use_rslora", "use_dora", "double_quant"):
            if not isinstance(getattr(self, name), bool):
                raise LoRAError(f"{name} must be true or false, got {getattr(self, name)!r}")
        ratio = self.loraplus_lr_ratio
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                                  or not math.isfinite(ratio) or ratio <= 0):
            raise LoRAError(f"loraplus_lr_ratio must be a finite number greater than 0 (the paper suggests 16), got {ratio!r}")
        if self.quantize_base not in QUANTIZE_CHOICES:
            raise LoRAError(f"quantize_base must be one of {', '.join(QUANTIZE_CHOICES)}, got {self.quantize_base!r}")
        size = self.quant_block_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 2 or size % 2:
            raise LoRAError(f"quant_block_size must be an even whole number of at least 2, got {size!r}; 64 is QLoRA's")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LoRAConfig":
        missing = sorted(set(REQUIRED_KEYS) - set(values))
        if missing:
            raise ValueError(f"LoRA config lacks {missing}")
        names = {f.name for f in fields(cls)}  # the variant fields are optional: older adapters lack them
        return cls(**{name: values[name] for name in names if name in values}).validate()
