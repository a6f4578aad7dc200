"""Read a text corpus, split it by document, and draw training batches.

A corpus is UTF-8 text whose documents are separated by blank lines. The split
into train and validation is made by whole documents (every `val_every`-th one
goes to validation), never by cutting the token stream, so no window of text
can appear on both sides. Each split is one token stream with `<eot>` between
documents; a batch is `batch_size` random windows of `block_size + 1` tokens.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import read_text_file
from minigpt.tokenizer import WordTokenizer


def read_corpus(path: str | Path) -> str:
    """The corpus text; a UserError for a missing, non-UTF-8 or empty file."""
    text = read_text_file(path, "corpus file", "pass an existing text file (see --help)")
    if not text.strip():
        raise UserError(f"corpus file {path} is empty; give it some text")
    return text


def split_documents(text: str) -> list[str]:
    """Documents are separated by one or more blank lines."""
    documents = []
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        chunk = " ".join(chunk.split())
        if chunk:
            documents.append(chunk)
    return documents


@dataclass
class CorpusSplits:
    train: torch.Tensor  # 1-D LongTensor of token ids
    val: torch.Tensor
    train_documents: list[str]
    val_documents: list[str]


def split_train_val(documents: list[str], val_every: int = 10) -> tuple[list[str], list[str]]:
    """Every val_every-th document (the 10th, 20th, ...) goes to validation."""
    if len(documents) < 2:
        raise UserError(f"the corpus has {len(documents)} document(s); it needs at least 2, separated by a blank line")
    val = documents[val_every - 1 :: val_every] or documents[-1:]
    val_ids = {id(d) for d in val}
    train = [d for d in documents if id(d) not in val_ids]
    return train, val


def encode_documents(documents: list[str], tokenizer: WordTokenizer) -> torch.Tensor:
    """One token stream: each document followed by <eot>."""
    ids: list[int] = []
    for document in documents:
        ids.extend(tokenizer.encode(document))
        ids.append(tokenizer.eot_id)
    return torch.tensor(ids, dtype=torch.long)


def make_splits(text: str, tokenizer: WordTokenizer, block_size: int, source: str = "corpus",
                fix: str = "use a longer corpus or a smaller --block-size") -> CorpusSplits:
    train_docs, val_docs = split_train_val(split_documents(text))
    splits = CorpusSplits(encode_documents(train_docs, tokenizer), encode_documents(val_docs, tokenizer), train_docs, val_docs)
    for name, stream in (("training", splits.train), ("validation", splits.val)):
        if len(stream) <= block_size:
            raise UserError(
                f"{source}'s {name} split has {len(stream)} tokens, fewer than one context window "
                f"(block_size + 1 = {block_size + 1}); {fix}"
            )
    return splits


def get_batch(
    data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs x (B, T) and targets y (B, T), y being x shifted left by one token."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[s : s + block_size] for s in starts.tolist()])
    y = torch.stack([data[s + 1 : s + 1 + block_size] for s in starts.tolist()])
    return x.to(device), y.to(device)
