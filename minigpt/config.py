"""`GPTConfig`: every hyperparameter that defines a MiniGPT's shape.

The config is saved next to the weights as `config.json`, so a model directory
can be loaded without re-typing any size (the minGPT/nanoGPT habit).
"""

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

    def validate(self) -> "GPTConfig":
        """Raise a UserError naming the first impossible value, else return self."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise UserError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"pick for example --n-head {_a_divisor(self.n_embd)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        return self

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


def _a_divisor(n: int) -> int:
    """The largest divisor of n that is at most 8, for the error message's hint."""
    return max(d for d in range(1, 9) if n % d == 0)
