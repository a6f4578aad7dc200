"""Replay: mix windows of the pretraining corpus into every fine-tuning batch, against forgetting.

With fraction f and batch size B, each batch holds round(f * B) windows of the
pretraining corpus's TRAINING split (never its validation split, which measures
forgetting) and B - round(f * B) windows of the new domain. Both are drawn with
the training loop's own seeded generator, so a run is as repeatable as one
without replay. The loop itself (minigpt/training.py) knows nothing of replay:
it only accepts a function that draws the next batch.
"""

import torch

from minigpt.data import encode_documents, get_batch, read_corpus, split_documents, split_train_val
from minigpt.plumbing.errors import UserError


def replay_windows(fraction: float, batch_size: int) -> int:
    """How many of a batch's windows come from the pretraining corpus."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"the replay fraction must be in [0, 1), got {fraction}; try --replay 0.25")
    count = round(fraction * batch_size)
    if count >= batch_size:
        raise UserError(f"--replay {fraction} leaves no new-domain window in a batch of {batch_size}; use a smaller fraction")
    return count


def pretraining_train_tokens(pretrain_corpus: str, tokenizer) -> torch.Tensor:
    """The pretraining corpus's training split (the same document split pretraining used), as token ids."""
    train_docs, _ = split_train_val(split_documents(read_corpus(pretrain_corpus)))
    return encode_documents(train_docs, tokenizer)


def mixed_batch_drawer(new_domain: torch.Tensor, old_domain: torch.Tensor, fraction: float, block_size: int, batch_size: int):
    """draw(generator) -> (x, y) of shape (batch_size, block_size): new-domain windows first, then replayed ones."""
    replayed = replay_windows(fraction, batch_size)
    if len(old_domain) <= block_size:
        raise UserError(f"the pretraining corpus's training split has {len(old_domain)} tokens, too few to replay windows "
                        f"of {block_size + 1}; pass the pretraining corpus with --pretrain-corpus")

    def draw(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x_new, y_new = get_batch(new_domain, block_size, batch_size - replayed, generator)  # (B - R, T)
        if replayed == 0:
            return x_new, y_new
        x_old, y_old = get_batch(old_domain, block_size, replayed, generator)  # (R, T)
        return torch.cat([x_new, x_old]), torch.cat([y_new, y_old])  # (B, T)

    return draw


def replay_batch_drawer(data, pretrain_corpus: str, fraction: float, block_size: int, batch_size: int):
    """The batch function for a fine-tuning run on `data` (experiment/training/data.py) with this replay fraction."""
    old_domain = pretraining_train_tokens(pretrain_corpus, data.tokenizer)
    return mixed_batch_drawer(data.splits.train, old_domain, fraction, block_size, batch_size)
