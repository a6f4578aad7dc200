"""Train only the embedding rows of new words, leaving the old rows untouched.

Fine-tuning on a new domain adds words to the vocabulary. Layer freezing and
LoRA freeze the embedding, but the new words' rows start as guesses and must
train. A gradient mask on the full matrix is not enough: AdamW's weight decay
would still shrink the old rows, and the optimizer would keep moments for the
whole matrix. So the matrix is split into two parameters instead:

    old_rows (frozen, pretrained)  +  new_rows (trainable)  ->  cat -> (V, C)

`SplitEmbedding` looks tokens up in the concatenation; `SplitTiedHead` uses the
same two parameters as the output head, so weight tying still holds.
`join_new_token_rows` turns the model back into a plain MiniGPT before saving.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class SplitEmbedding(nn.Module):
    def __init__(self, old_rows: nn.Parameter, new_rows: nn.Parameter):
        super().__init__()
        self.old_rows, self.new_rows = old_rows, new_rows

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.old_rows, self.new_rows], dim=0)  # (V_old + V_new, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


class SplitTiedHead(nn.Module):
    """The output head, tied to the same two row blocks as SplitEmbedding."""

    def __init__(self, old_rows: nn.Parameter, new_rows: nn.Parameter):
        super().__init__()
        self.old_rows, self.new_rows = old_rows, new_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, torch.cat([self.old_rows, self.new_rows], dim=0))  # (B, T, V)


def split_new_token_rows(model, num_old_tokens: int) -> nn.Parameter:
    """Make rows [num_old_tokens:] a separate trainable parameter and freeze the rest; return the new rows."""
    weight = model.token_embedding.weight.detach()
    old_rows = nn.Parameter(weight[:num_old_tokens].clone(), requires_grad=False)
    new_rows = nn.Parameter(weight[num_old_tokens:].clone(), requires_grad=True)
    model.token_embedding = SplitEmbedding(old_rows, new_rows)
    model.lm_head = SplitTiedHead(old_rows, new_rows)
    return new_rows


def join_new_token_rows(model) -> None:
    """Undo split_new_token_rows: one plain, tied nn.Embedding again."""
    if not isinstance(model.token_embedding, SplitEmbedding):
        return
    weight = model.token_embedding.weight.detach().clone()
    vocab_size, n_embd = weight.shape
    model.token_embedding = nn.Embedding(vocab_size, n_embd, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        model.token_embedding.weight.copy_(weight)
    model.lm_head = nn.Linear(n_embd, vocab_size, bias=False, device=weight.device, dtype=weight.dtype)
    model.lm_head.weight = model.token_embedding.weight
