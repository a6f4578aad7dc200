"""Prompt tuning (Lester, Al-Rfou and Constant, 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning",
section 2; initialisation in section 2.1; the effect of scale in section 3 and figure 1).

`p` (num_virtual_tokens) learned vectors are put before the input embeddings;
the whole model, its embedding table included, stays frozen:

    x = [P ; E(tokens)] + position embeddings        P: (p, d)

The virtual tokens sit at positions 0 .. p-1 and the text at p .. p+T-1
(as in PEFT), so p of the context's positions are taken from the text. Only
the input changes: nothing per layer, nothing after the first layer.

Initialisation (PEFT's `prompt_tuning_init`): "TEXT" copies the embeddings of
the words of `prompt_tuning_init_text`, repeated or cut to p (the paper's
"sampled vocabulary"/class-label idea: start from real words); "RANDOM" draws
from nn.Embedding's default N(0, 1), as PEFT does.

Trainable parameters: p · d.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from peft_methods.errors import PeftMethodError
from peft_methods.modules import freeze
from peft_methods.virtual_tokens import check_free_slot, check_virtual_tokens

PROMPT_INITS = ("TEXT", "RANDOM")


@dataclass
class PromptTuningConfig:
    num_virtual_tokens: int = 8  # p
    prompt_tuning_init: str = "TEXT"
    prompt_tuning_init_text: str = "a recipe for cooking food"

    def validate(self, block_size: int) -> "PromptTuningConfig":
        check_virtual_tokens(self.num_virtual_tokens, block_size, "prompt tuning")
        if self.prompt_tuning_init not in PROMPT_INITS:
            raise PeftMethodError(f"prompt_tuning_init must be one of {', '.join(PROMPT_INITS)}, got {self.prompt_tuning_init!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class PromptEmbedding(nn.Module):
    """(batch_size) -> the p learned input vectors, (B, p, d)."""

    def __init__(self, num_virtual_tokens: int, n_embd: int):
        super().__init__()
        self.num_virtual_tokens = num_virtual_tokens
        self.embedding = nn.Embedding(num_virtual_tokens, n_embd)  # N(0, 1): PEFT's RANDOM init

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)  # (B, p, d)


def text_init_ids(token_ids: list[int], num_virtual_tokens: int) -> list[int]:
    """The init text's ids repeated until there are p of them, then cut to p (as PEFT does)."""
    if not token_ids:
        raise PeftMethodError("prompt_tuning_init_text has no words in the vocabulary; give words the model knows, or use RANDOM")
    repeats = -(-num_virtual_tokens // len(token_ids))
    return (token_ids * repeats)[:num_virtual_tokens]


def apply_prompt_tuning(model: nn.Module, config: PromptTuningConfig, init_token_ids: list[int] | None = None) -> PromptEmbedding:
    """Freeze the model and put a PromptEmbedding in its `extra_embeddings` slot.

    init_token_ids: the tokenized init text (needed for "TEXT"); its embedding rows are copied from model.token_embedding.
    """
    c = model.config
    config.validate(c.block_size)
    check_free_slot(model, "extra_embeddings", "prompt tuning")
    freeze(model)
    prompt = PromptEmbedding(config.num_virtual_tokens, c.n_embd).to(next(model.parameters()).device)
    if config.prompt_tuning_init == "TEXT":
        ids = torch.tensor(text_init_ids(list(init_token_ids or []), config.num_virtual_tokens))
        with torch.no_grad():
            prompt.embedding.weight.copy_(model.token_embedding(ids.to(prompt.embedding.weight.device)))
    model.extra_embeddings = prompt
    return prompt


def prompt_parameter_count(config: PromptTuningConfig, n_embd: int) -> int:
    """The docstring's formula."""
    return config.num_virtual_tokens * n_embd
