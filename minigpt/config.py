"""`GPTConfig`: every hyperparameter that defines a MiniGPT's shape.

The config is saved next to the weights as `config.json`, so a model directory
can be loaded without re-typing any size (the minGPT/nanoGPT habit).
"""

import os
from dataclasses import asdict, dataclass, fields

from minigpt.io import UserError


@dataclass
class GPTConfig:
    vocab_size: int = 1000  # set from the tokenizer before building a model
    block_size: int = 64  # context length in tokens
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 64  # width of the residual stream
    dropout: float = 0.0  # the toy corpus is small but repetitive: no dropout needed
    bias: bool = True  # biases in the Linear layers and LayerNorms

    def validate(self, training: bool = False) -> "GPTConfig":
        """Raise a UserError naming the first impossible value, else return self.

        Checked before any tensor exists: types (a bool is not an int), and the
        memory the parameters need (`training`: with gradients and AdamW's two
        moments) against the machine's memory, so a typo such as --n-embd 100000
        is one line, not a 40 GB allocation that fails or swaps.
        """
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise UserError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, bool):
            raise UserError(f"bias must be true or false, got {self.bias!r}")
        if self.n_embd % self.n_head != 0:
            raise UserError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"pick for example --n-head {_a_divisor(self.n_embd)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        self.check_memory(training)
        return self

    def estimated_parameters(self) -> int:
        """Parameters MiniGPT allocates: embeddings (the output head is made, then tied), blocks, final norm."""
        v, t, e, n = self.vocab_size, self.block_size, self.n_embd, self.n_layer
        return 2 * v * e + t * e + n * (12 * e * e + 13 * e) + 2 * e

    def check_memory(self, training: bool = False) -> None:
        bytes_per_parameter = 16 if training else 4  # float32 weights; training adds gradients and two AdamW moments
        needed = self.estimated_parameters() * bytes_per_parameter
        available = machine_memory_bytes()
        if available and needed > available:
            what = "to train (weights, gradients and AdamW moments in float32)" if training else "for its weights"
            raise UserError(
                f"this model would have {self.estimated_parameters():,} parameters and need about {needed / 2**30:,.1f} GiB "
                f"{what}, but this machine has {available / 2**30:,.1f} GiB; choose a smaller --n-embd, --n-layer or --block-size"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        missing = sorted(known - set(values))
        if unknown or missing:
            raise ValueError(f"config keys do not match GPTConfig (unknown: {unknown}, missing: {missing})")
        try:
            return cls(**values).validate()
        except UserError as error:
            raise ValueError(str(error)) from None


def machine_memory_bytes() -> int:
    """Physical memory of this machine in bytes, or 0 where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _a_divisor(n: int) -> int:
    """The largest divisor of n that is at most 8, for the error message's hint."""
    return max(d for d in range(1, 9) if n % d == 0)
