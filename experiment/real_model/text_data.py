"""A text file tokenized with the model's own tokenizer: training and validation token streams.

The same split as MiniGPT's corpora (minigpt/data.py): documents are separated
by blank lines and every 10th goes to validation. Each document is encoded by
the Hugging Face tokenizer and followed by its end-of-sequence token, so the
model sees document boundaries the way it was pretrained to.
"""

from dataclasses import dataclass

import torch

from minigpt.data import read_corpus, split_documents, split_train_val
from minigpt.plumbing.errors import UserError


@dataclass
class TokenStreams:
    train: torch.Tensor  # 1-D LongTensor of token ids
    val: torch.Tensor
    train_documents: int
    val_documents: int


def encode_with(tokenizer, documents: list[str]) -> torch.Tensor:
    """One stream of ids: each document, then the tokenizer's end-of-sequence token (if it has one)."""
    ids: list[int] = []
    for document in documents:
        ids.extend(tokenizer.encode(document, add_special_tokens=False))
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def tokenize_text_file(path: str, tokenizer, block_size: int) -> TokenStreams:
    """Train and validation streams of `path`; each must hold more than one window of block_size + 1 tokens."""
    train_documents, val_documents = split_train_val(split_documents(read_corpus(path)))
    streams = TokenStreams(encode_with(tokenizer, train_documents), encode_with(tokenizer, val_documents),
                           len(train_documents), len(val_documents))
    for split, stream in (("training", streams.train), ("validation", streams.val)):
        if len(stream) <= block_size + 1:
            raise UserError(f"the {split} part of {path} has {len(stream)} tokens, fewer than one window of "
                            f"{block_size + 1}; use a longer text or a smaller --block-size")
    return streams
