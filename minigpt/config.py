"""`GPTConfig`: every hyperparameter that defines a MiniGPT's shape.

The config is saved next to the weights as `config.json`, so a model directory
can be loaded without re-typing any size (the minGPT/nanoGPT habit).
"""

import os
from dataclasses import asdict, dataclass, fields

from minigpt.plumbing.errors import UserError


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

    def estimated_activation_floats(self, batch_size: int) -> int:
        """Floats the forward pass keeps for backpropagation, per step: a rough upper estimate.

        Per token and layer: about 16 * n_embd (layer norms, q, k, v, attention output, the 4x-wide MLP and its
        activation) plus 3 * n_head * block_size (attention scores, softmax, mask); per token at the top, 3 * vocab_size
        (logits, their softmax and its gradient). Korthikanti et al. (2022, arXiv:2205.05198, section 4.1) count the
        same terms for a GPT layer.
        """
        tokens = batch_size * self.block_size
        per_layer = 16 * self.n_embd + 3 * self.n_head * self.block_size
        return tokens * (self.n_layer * per_layer + 3 * self.vocab_size)

    def check_memory(self, training: bool = False, batch_size: int | None = None) -> None:
        """A UserError if the weights (and, training, gradients, AdamW moments and one batch's activations) exceed
        the memory this machine has free now (MemAvailable), so a typo is one line, not a swap storm or a kill."""
        bytes_per_parameter = 16 if training else 4  # float32 weights; training adds gradients and two AdamW moments
        needed = self.estimated_parameters() * bytes_per_parameter
        if training and batch_size:
            needed += 4 * self.estimated_activation_floats(batch_size)
        available = available_memory_bytes()
        if available and needed > available:
            what = ("to train (weights, gradients, AdamW moments and activations in float32)" if training
                    else "for its weights")
            raise UserError(
                f"this model ({self.estimated_parameters():,} parameters) would need about {needed / 2**30:,.1f} GiB "
                f"{what}, but this machine has {available / 2**30:,.1f} GiB free; choose a smaller --batch-size, "
                "--n-embd, --n-layer or --block-size"
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


def available_memory_bytes() -> int:
    """Memory free for a new job now: MemAvailable from /proc/meminfo (Linux), else the physical total, else 0."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    return machine_memory_bytes()


def machine_memory_bytes() -> int:
    """Physical memory of this machine in bytes, or 0 where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _a_divisor(n: int) -> int:
    """The largest divisor of n that is at most 8, for the error message's hint."""
    return max(d for d in range(1, 9) if n % d == 0)
