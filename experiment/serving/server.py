"""Serving many adapters on one base: load them by name, switch, disable, mix, generate.

`AdapterServer` holds one MiniGPT base and any number of adapter directories
(experiment/training/adapter.py's format). The A and B matrices live in
lora/multi_adapter.py's MultiLoRALinear; this file adds what lora/ cannot know
about: each adapter's new words.

The vocabulary is the union
---------------------------
The base's words keep their ids. Each adapter's new words are appended in
the order the adapter lists them; a word already in the union keeps its id.
So old ids never move, and loading or deleting an adapter never renumbers
another one's words (a deleted adapter's ids stay reserved).

Two adapters that add the same word (cooking and sport both bring "ramen")
get one id but keep their own embedding rows, like their own A and B. The rule,
in `AdapterVocabulary`:
  * one adapter active: a new word has that adapter's row if the adapter has
    the word, and is unknown otherwise;
  * a mix with weights w_i (all >= 0): a new word's row is the weighted mean
    sum_i w_i row_i / sum_i w_i over the mixed adapters that have it; with a
    weight of 1 on one adapter that is its row exactly.
`shared_words` lists such words after loading, so the overlap is never silent.

A word the active model does not have is unknown to it, exactly as it would be
to that model on its own: as input it reads as <unk>, and its logit is -inf, so
it is never predicted. Hence "adapter X active" computes exactly the logits of
a model that only ever had adapter X (on X's words; -inf on the others).
"""

import copy
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from experiment.training.adapter import LORA_WEIGHTS, RERUN, check_adapter_fits_base, read_adapter_config
from lora import (LoRAConfig, LoRAError, active_adapters, adapter_names, add_adapter, delete_adapter, load_lora_weights,
                  set_adapter_weights)
from lora.multi_adapter import check_mixable, load_adapter_state_dict
from minigpt.checkpoint import load_model_dir, model_fingerprint
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer, split_words

MAX_MIX_WEIGHT = 10.0  # far beyond 1 an update swamps the base; 1e300 overflows the logits to NaN


class AdapterVocabulary(nn.Module):
    """The base's embedding rows (frozen) plus each adapter's new rows; which are visible depends on `active`."""

    def __init__(self, base_rows: torch.Tensor, unk_id: int):
        super().__init__()
        self.base_rows = nn.Parameter(base_rows.detach().clone(), requires_grad=False)  # (V_base, C)
        self.new_rows = nn.ParameterDict()  # adapter name -> (its new words, C)
        self.token_ids: dict[str, torch.Tensor] = {}  # adapter name -> the union ids of its new words
        self.vocab_size = base_rows.shape[0]
        self.unk_id = unk_id
        self.active: dict[str, float] = {}

    def add(self, name: str, token_ids: torch.Tensor, rows: torch.Tensor, vocab_size: int) -> None:
        self.new_rows[name] = nn.Parameter(rows.detach().clone().to(self.base_rows), requires_grad=False)
        self.token_ids[name] = token_ids.to(self.base_rows.device)
        self.vocab_size = vocab_size

    def remove(self, name: str) -> None:
        del self.new_rows[name]
        del self.token_ids[name]
        self.active.pop(name, None)

    def visible(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, rows): the ids the active model knows, in increasing order, and their rows (n_visible, C)."""
        num_base, n_embd = self.base_rows.shape
        weighted = torch.zeros(self.vocab_size - num_base, n_embd, dtype=self.base_rows.dtype, device=self.base_rows.device)
        total = torch.zeros(self.vocab_size - num_base, dtype=self.base_rows.dtype, device=self.base_rows.device)
        for name, weight in self.active.items():
            if weight != 0:
                offsets = self.token_ids[name] - num_base
                weighted[offsets] += weight * self.new_rows[name]
                total[offsets] += weight
        known = (total != 0).nonzero().squeeze(1)  # offsets of the new words some active adapter has
        ids = torch.cat([torch.arange(num_base, device=known.device), num_base + known])
        rows = torch.cat([self.base_rows, weighted[known] / total[known, None]])  # weight 1 on one adapter: its rows exactly
        return ids, rows

    def known_mask(self) -> torch.Tensor:
        """(V,) True for every id the active model knows."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.base_rows.device)
        mask[self.visible()[0]] = True
        return mask


class AdapterEmbedding(nn.Module):
    """Token lookup over the visible rows; an id the active model lacks reads as <unk>."""

    def __init__(self, vocabulary: AdapterVocabulary):
        super().__init__()
        self.vocabulary = vocabulary

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        ids, rows = self.vocabulary.visible()
        position = torch.full((self.vocabulary.vocab_size,), -1, dtype=torch.long, device=idx.device)
        position[ids] = torch.arange(len(ids), device=idx.device)  # union id -> row in `rows`, -1 if unknown
        looked_up = position[idx]  # (B, T)
        looked_up = torch.where(looked_up >= 0, looked_up, position[self.vocabulary.unk_id])
        return F.embedding(looked_up, rows)  # (B, T, C)


class AdapterHead(nn.Module):
    """The tied output head: logits for the visible rows, -inf for words the active model lacks."""

    def __init__(self, vocabulary: AdapterVocabulary):
        super().__init__()
        self.vocabulary = vocabulary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, rows = self.vocabulary.visible()
        visible_logits = F.linear(x, rows)  # (B, T, n_visible)
        logits = visible_logits.new_full((*x.shape[:-1], self.vocabulary.vocab_size), float("-inf"))  # (B, T, V)
        logits[..., ids] = visible_logits
        return logits


class AdapterServer:
    """One frozen MiniGPT base and named adapters loaded from their directories.

    Plain LoRA, rsLoRA and LoRA+ adapters only: DoRA and QLoRA adapters are
    refused in one line (lora/multi_adapter.py, check_mixable, says why).
    """

    def __init__(self, base, base_tokenizer: WordTokenizer, base_name: str = "base model"):
        self.base_fingerprint = model_fingerprint(base)
        self.base_name = base_name
        self.base_vocab_size = base_tokenizer.vocab_size
        self.base_tokenizer = base_tokenizer
        self.tokenizer = base_tokenizer.copy()  # grows into the union of every adapter's vocabulary
        self.model = copy.deepcopy(base).eval()
        self.vocabulary = AdapterVocabulary(self.model.token_embedding.weight, base_tokenizer.unk_id)
        self.model.token_embedding = AdapterEmbedding(self.vocabulary)
        self.model.lm_head = AdapterHead(self.vocabulary)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.configs: dict[str, LoRAConfig] = {}
        self.words: dict[str, list[str]] = {}  # adapter name -> its new words
        self.shared_words: dict[str, list[str]] = {}  # adapter name -> its new words an earlier adapter also has

    @classmethod
    def from_base_dir(cls, path, device="cpu") -> "AdapterServer":
        base, tokenizer = load_model_dir(path, device, hint="run python train_pretrain.py first")
        return cls(base, tokenizer, str(path))

    @property
    def names(self) -> list[str]:
        return list(self.configs)

    def load(self, name: str, path) -> None:
        """Add the adapter directory at `path` under `name` (not active yet: call use or mix)."""
        path = Path(path)
        if name in self.configs:
            raise UserError(f"an adapter named {name!r} is already loaded; give each adapter its own name")
        settings = read_adapter_config(path)
        config = LoRAConfig.from_dict(settings)
        try:
            check_mixable(config)  # DoRA and QLoRA are not additive updates on this float base: refused, never served wrong
        except LoRAError as error:
            raise UserError(f"adapter {path}: {error} (generate.py does that by itself)") from None
        tokenizer, rows = check_adapter_fits_base(path, settings, self.base_fingerprint, self.model.config.n_embd,
                                                  self.base_tokenizer, self.base_name)
        device = self.vocabulary.base_rows.device
        try:
            add_adapter(self.model, name, config)
            load_adapter_state_dict(self.model, name, load_lora_weights(path / LORA_WEIGHTS), source=str(path / LORA_WEIGHTS))
        except LoRAError as error:
            if name in adapter_names(self.model):
                delete_adapter(self.model, name)
            raise UserError(f"{error}; {RERUN}") from None
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.model.to(device)
        words = tokenizer.id_to_token[self.base_vocab_size:]
        shared = [w for w in words if w in self.tokenizer.token_to_id]
        self.tokenizer.extend(words)  # only now that nothing can fail: a refused adapter leaves no trace
        token_ids = torch.tensor([self.tokenizer.token_to_id[w] for w in words], dtype=torch.long)
        self.vocabulary.add(name, token_ids, rows, self.tokenizer.vocab_size)
        self.model.config.vocab_size = self.tokenizer.vocab_size
        self.configs[name], self.words[name], self.shared_words[name] = config, words, shared

    def check_name(self, name: str) -> None:
        if name not in self.configs:
            raise UserError(f"unknown adapter {name!r}; loaded adapters: {', '.join(self.configs) or 'none'}")

    def mix(self, weights: dict[str, float]) -> None:
        """Activate sum_i w_i (alpha_i/r_i) B_i A_i and the weighted new rows; {} is the base model."""
        for name, weight in weights.items():
            self.check_name(name)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= MAX_MIX_WEIGHT:
                raise UserError(f"the weight of adapter {name!r} must be a finite number from 0 to {MAX_MIX_WEIGHT:g}, got {weight!r}")
        if weights and not sum(weights.values()) > 0:
            raise UserError("the adapter weights add up to 0; give at least one adapter a positive weight")
        set_adapter_weights(self.model, dict(weights))
        self.vocabulary.active = {name: float(weight) for name, weight in weights.items()}

    def use(self, name: str | None) -> None:
        """Switch to one adapter (None: the base model alone). Costs no copy: only which tensors are used changes."""
        self.mix({} if name is None else {name: 1.0})

    @property
    def active(self) -> dict[str, float]:
        return active_adapters(self.model) if self.configs else {}

    def delete(self, name: str) -> None:
        self.check_name(name)
        delete_adapter(self.model, name)
        self.vocabulary.remove(name)
        for table in (self.configs, self.words, self.shared_words):
            del table[name]

    def known_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids with every word the active model lacks replaced by <unk> (for targets of a loss)."""
        mask = self.vocabulary.known_mask().to(ids.device)
        return torch.where(mask[ids], ids, torch.full_like(ids, self.tokenizer.unk_id))

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` the active model lacks (they read as <unk>)."""
        mask = self.vocabulary.known_mask()
        ids = self.tokenizer.token_to_id
        return [w for w in split_words(text) if w not in ids or not mask[ids[w]]]
