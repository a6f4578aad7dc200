"""`LoRAConfig`: the hyperparameters of a LoRA adapter, named as PEFT names them.

* r (rank): the inner size of the low-rank update B A. The paper's Table 6
  (Hu et al., 2021, section 7.2) finds rank 1 to 8 already enough on GPT-3
  for its tasks; rank 4 on this 64-wide model keeps each update at
  4 * (64 + 64) = 512 parameters instead of 64 * 64 = 4,096.
* lora_alpha: the update is scaled by lora_alpha / r (paper, section 4.1).
  The default here is twice the rank (scaling 2.0), a common rule of thumb
  from practitioners' sweeps: the update's size then stays the same when you
  change --rank, and the small adapter learns quickly at a moderate learning
  rate. The paper itself sets alpha to the first r it tries (scaling 1.0).
* lora_dropout: dropout on the input of the LoRA branch only (as in loralib and
  PEFT); the frozen path never sees it.
* target_modules: nn.Linear layers whose name ends with one of these are
  adapted. The paper adapts the attention projections (section 4.2).
* init_lora_weights: how A starts ("kaiming", the default, is the
  kaiming-uniform init of nn.Linear that loralib and PEFT use; "gaussian" is the
  paper's normal init, here with std 1/r as in PEFT). B always starts at zero.
"""

import math
from dataclasses import asdict, dataclass, field

from lora.errors import LoRAError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
A_INITS = ("kaiming", "gaussian")


@dataclass
class LoRAConfig:
    r: int = 4
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0  # PEFT's default; the toy domain needs no extra regularisation
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    init_lora_weights: str = "kaiming"

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

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
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LoRAConfig":
        names = {"r", "lora_alpha", "lora_dropout", "target_modules", "init_lora_weights"}
        missing = sorted(names - set(values))
        if missing:
            raise ValueError(f"LoRA config lacks {missing}")
        return cls(**{name: values[name] for name in names}).validate()
