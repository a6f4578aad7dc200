"""Prefix tuning (Li and Liang, 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation",
section 4.2 for the method, section 4.3 for the reparametrisation).

Every layer gets `p` (num_virtual_tokens) learned key and value vectors that
every real token attends to, as if p earlier positions had been read:

    head_i = softmax(q_i [P_k ; K_i]ᵀ / √d_h) [P_v ; V_i]      P_k, P_v: (p, d) per layer

The base is frozen and nothing is inserted into the block: the prefix lives in
the key/value cache (MiniGPT's `extra_key_values` slot), so the p positions are
taken from the context (64 - p remain for text) and cost p extra keys per layer
at every generated token.

Reparametrisation (section 4.3; PEFT's `prefix_projection`): optimising the
prefix table directly is unstable, so during training it is produced by a
small MLP from a smaller table,

    P = W_2 tanh(W_1 E + b_1) + b_2     E: (p, d), W_1: (h, d), W_2: (2·n_layer·d, h)
    h = `encoder_hidden_size`

and after training only P is kept (`fold`): the MLP is thrown away.

Trainable parameters (d = n_embd, L = n_layer):
    with prefix_projection:    p·d + (h·d + h) + (2L·d·h + 2L·d)
    without, and once folded:  p · 2L·d
The layout of P's last dimension follows PEFT: layer l's keys are block 2l,
its values block 2l + 1, each split into (n_head, head_dim).
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from peft_methods.errors import PeftMethodError
from peft_methods.modules import freeze
from peft_methods.virtual_tokens import check_free_slot, check_virtual_tokens


@dataclass
class PrefixTuningConfig:
    num_virtual_tokens: int = 8  # p
    prefix_projection: bool = True  # train through the MLP (section 4.3), folded away afterwards
    encoder_hidden_size: int = 64  # h, the MLP's width

    def validate(self, block_size: int) -> "PrefixTuningConfig":
        check_virtual_tokens(self.num_virtual_tokens, block_size, "prefix tuning")
        if isinstance(self.encoder_hidden_size, bool) or not isinstance(self.encoder_hidden_size, int) or self.encoder_hidden_size < 1:
            raise PeftMethodError(f"encoder_hidden_size must be a positive integer, got {self.encoder_hidden_size!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class PrefixEncoder(nn.Module):
    """(batch_size) -> one (keys, values) per layer, each (B, n_head, p, head_dim)."""

    def __init__(self, config: PrefixTuningConfig, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        self.num_virtual_tokens, self.n_layer, self.n_head, self.n_embd = config.num_virtual_tokens, n_layer, n_head, n_embd
        self.prefix_projection = config.prefix_projection
        width = 2 * n_layer * n_embd  # keys and values of every layer, side by side
        if self.prefix_projection:
            self.embedding = nn.Embedding(config.num_virtual_tokens, n_embd)  # E
            self.transform = nn.Sequential(nn.Linear(n_embd, config.encoder_hidden_size), nn.Tanh(),
                                           nn.Linear(config.encoder_hidden_size, width))
        else:
            self.embedding = nn.Embedding(config.num_virtual_tokens, width)  # P itself
            self.transform = None

    def table(self) -> torch.Tensor:
        """P: (p, 2·n_layer·n_embd)."""
        table = self.embedding.weight
        return self.transform(table) if self.transform is not None else table

    def forward(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        p, head_dim = self.num_virtual_tokens, self.n_embd // self.n_head
        table = self.table().view(p, 2 * self.n_layer, self.n_head, head_dim)  # (p, 2L, n_head, head_dim)
        table = table.permute(1, 2, 0, 3)  # (2L, n_head, p, head_dim)
        table = table.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (2L, B, n_head, p, head_dim)
        return [(table[2 * layer], table[2 * layer + 1]) for layer in range(self.n_layer)]

    @torch.no_grad()
    def fold(self) -> None:
        """Keep P, drop the MLP: the same keys and values, p·2L·d numbers, no projection at run time."""
        if self.transform is None:
            return
        table = self.table()
        self.embedding = nn.Embedding(*table.shape, device=table.device, dtype=table.dtype)
        self.embedding.weight.copy_(table)
        self.transform, self.prefix_projection = None, False


def apply_prefix_tuning(model: nn.Module, config: PrefixTuningConfig) -> PrefixEncoder:
    """Freeze the model and put a PrefixEncoder in its `extra_key_values` slot (sizes from model.config)."""
    c = model.config
    config.validate(c.block_size)
    check_free_slot(model, "extra_key_values", "prefix tuning")
    freeze(model)
    encoder = PrefixEncoder(config, c.n_layer, c.n_head, c.n_embd).to(next(model.parameters()).device)
    model.extra_key_values = encoder
    return encoder


def prefix_parameter_count(config: PrefixTuningConfig, n_layer: int, n_embd: int, folded: bool = False) -> int:
    """The docstring's formulas."""
    p, h, width = config.num_virtual_tokens, config.encoder_hidden_size, 2 * n_layer * n_embd
    if config.prefix_projection and not folded:
        return p * n_embd + (h * n_embd + h) + (width * h + width)
    return p * width
