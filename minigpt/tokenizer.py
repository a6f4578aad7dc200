"""A word-level tokenizer built from a corpus.

Rules, chosen so a 64-wide model sees a small, clean vocabulary:

* Text is lower-cased ("The Cat" and "the cat" are the same two tokens).
* A token is a run of letters and digits (`[a-z0-9]+`), joined through an
  apostrophe inside a word ("king's", "i'll", "o'er" stay one word; a
  typographic ’ counts as '), or one punctuation character; whitespace only
  separates tokens. "hello, world." becomes ["hello", ",", "world", "."].
* Three special tokens come first: `<pad>` (0, padding), `<unk>` (1, any word
  the vocabulary lacks) and `<eot>` (2, end of text: it separates documents).
* Other tokens are numbered by falling frequency, ties alphabetical, so the same
  corpus always gives the same ids. `min_count` and `max_vocab` leave rare
  words out; they encode as `<unk>` (real text has many words seen once, and
  each costs a whole embedding row).

`extend(words)` appends new words after the existing ones. Existing ids never
move, which is what lets a fine-tuned model keep every pretrained embedding row.
`decode` joins words with spaces and attaches punctuation to the word before it.
"""

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from minigpt.plumbing.atomic_writes import atomic_write_text
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import parse_json, read_text_file

PAD, UNK, EOT = "<pad>", "<unk>", "<eot>"
SPECIAL_TOKENS = (PAD, UNK, EOT)
TOKEN_PATTERN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]")
FORMAT_VERSION = 1


def split_words(text: str) -> list[str]:
    """Lower-case the text and split it into word and punctuation tokens."""
    return TOKEN_PATTERN.findall(text.lower().replace("\u2019", "'"))


class WordTokenizer:
    def __init__(self, vocab: list[str]):
        if list(vocab[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIAL_TOKENS}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("a vocabulary must not repeat a token")
        self.id_to_token = list(vocab)
        self.token_to_id = {token: i for i, token in enumerate(self.id_to_token)}

    # -- building ---------------------------------------------------------
    @classmethod
    def from_corpus(cls, text: str, min_count: int = 1, max_vocab: int | None = None) -> "WordTokenizer":
        """Every word seen at least `min_count` times, the most frequent first; at most `max_vocab` tokens in all."""
        counts = Counter(split_words(text))
        ordered = sorted(counts, key=lambda word: (-counts[word], word))
        words = [w for w in ordered if w not in SPECIAL_TOKENS and counts[w] >= min_count]
        if max_vocab is not None:
            if max_vocab <= len(SPECIAL_TOKENS):
                raise UserError(f"--max-vocab must be more than the {len(SPECIAL_TOKENS)} special tokens, got {max_vocab}")
            words = words[: max_vocab - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + words)

    def new_words_in(self, text: str) -> list[str]:
        """Words of `text` the vocabulary lacks, most frequent first (ties alphabetical)."""
        counts = Counter(word for word in split_words(text) if word not in self.token_to_id)
        return sorted(counts, key=lambda word: (-counts[word], word))

    def copy(self) -> "WordTokenizer":
        return WordTokenizer(list(self.id_to_token))

    def extend(self, words: Iterable[str]) -> list[str]:
        """Append the words the vocabulary lacks (in the order given); return them."""
        added = []
        for word in words:
            if word not in self.token_to_id:
                self.token_to_id[word] = len(self.id_to_token)
                self.id_to_token.append(word)
                added.append(word)
        return added

    # -- using ------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    @property
    def eot_id(self) -> int:
        return self.token_to_id[EOT]

    @property
    def unk_id(self) -> int:
        return self.token_to_id[UNK]

    def encode(self, text: str) -> list[int]:
        unk = self.unk_id
        return [self.token_to_id.get(word, unk) for word in split_words(text)]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` that would encode as <unk>."""
        return [word for word in split_words(text) if word not in self.token_to_id]

    def decode(self, ids: Iterable[int]) -> str:
        pieces: list[str] = []
        for i in ids:
            token = self.id_to_token[i] if 0 <= i < self.vocab_size else UNK
            if pieces and not (len(token) == 1 and not token.isalnum()):
                pieces.append(" ")
            pieces.append(token)
        return "".join(pieces)

    # -- saving -----------------------------------------------------------
    def to_json(self) -> str:
        payload = {"format_version": FORMAT_VERSION, "lowercase": True, "vocab": self.id_to_token}
        return json.dumps(payload, indent=0, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "WordTokenizer":
        text = read_text_file(path, "tokenizer file", "re-run the script that wrote it")
        try:
            payload = parse_json(text)
            if not isinstance(payload["vocab"], list) or not all(isinstance(t, str) for t in payload["vocab"]):
                raise ValueError("vocab must be a list of strings")
            return cls(payload["vocab"])
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"tokenizer file {path} is corrupted ({error}); re-run the script that wrote it") from None
