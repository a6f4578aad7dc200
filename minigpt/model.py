"""MiniGPT: a small decoder-only transformer (GPT-2 layout, pre-LayerNorm).

    token ids (B, T)
      -> token embedding + position embedding      (B, T, C)
      -> n_layer x Block:  x = x + attention(LN(x));  x = x + feed_forward(LN(x))
      -> final LayerNorm -> output head (tied to the token embedding) -> logits (B, T, V)

Attention is built from four separate `nn.Linear` layers, `q_proj`, `k_proj`,
`v_proj` and `o_proj`, because LoRA finds the layers it adapts by these names.
The layout follows GPT-2 (Radford et al., 2019) as written in minGPT/nanoGPT.
"""

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.config import GPTConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.k_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.v_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.o_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.residual_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: "LayerCache | None" = None) -> torch.Tensor:
        B, T, C = x.shape
        # Project, then split the channels into heads: (B, T, C) -> (B, n_head, T, head_dim)
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if cache is not None and cache.keys is not None:
            # Decoding with a key/value cache: the T new queries attend to every earlier key as well.
            past = cache.keys.size(2)
            k = torch.cat([cache.keys, k], dim=2)  # (B, n_head, past + T, head_dim)
            v = torch.cat([cache.values, v], dim=2)  # (B, n_head, past + T, head_dim)
            cache.keys, cache.values = k, v
            # new query i (position past + i) may see keys 0 .. past + i
            visible = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)  # (T, past + T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)  # (B, n_head, T, head_dim)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.residual_dropout(self.o_proj(y))
        if cache is not None:  # the first call fills an empty cache
            cache.keys, cache.values = k, v
        # softmax(q k^T / sqrt(head_dim)) v with a causal mask, in one fused call
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, n_head, T, head_dim)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.residual_dropout(self.o_proj(y))


class FeedForward(nn.Module):
    """Position-wise MLP: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.down_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.gelu(self.up_proj(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: normalise, transform, add back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attention = CausalSelfAttention(config)
        self.feed_forward_norm = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.feed_forward = FeedForward(config)

    def forward(self, x: torch.Tensor, cache: "LayerCache | None" = None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cache)
        x = x + self.feed_forward(self.feed_forward_norm(x))
        return x


class LayerCache:
    """One block's keys and values so far, each (B, n_head, T_seen, head_dim); None before the first call."""

    def __init__(self):
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None


class KVCache:
    """The key/value cache of a whole model: one LayerCache per block, and how many positions it holds.

    With it, generating a token costs one position instead of re-reading the
    whole context: the keys and values of earlier positions never change,
    because attention is causal. See MiniGPT.generate(use_cache=True).
    """

    def __init__(self, n_layer: int):
        self.layers = [LayerCache() for _ in range(n_layer)]

    def fill(self, key_values: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Start an empty cache from given keys and values, one (keys, values) pair per block, each (B, n_head, p, head_dim)."""
        for layer, (keys, values) in zip(self.layers, key_values, strict=True):
            layer.keys, layer.values = keys, values

    @property
    def length(self) -> int:
        keys = self.layers[0].keys
        return 0 if keys is None else keys.size(2)


class MiniGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        # A private copy: resize_token_embeddings edits vocab_size, never the caller's config.
        self.config = dataclasses.replace(config).validate()
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.final_norm = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf, 2017): the output head reuses the token
        # embedding matrix, so a word is read and written with the same vector.
        self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)
        # GPT-2: scale the layers that write into the residual stream by 1/sqrt(2 * n_layer)
        for name, parameter in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        # Two empty slots a fine-tuning method may fill, each a module with `num_virtual_tokens` (p) that
        # MiniGPT calls with the batch size (prefix and prompt tuning fill them; see peft_methods/):
        #   extra_key_values(B) -> one (keys, values) per block, each (B, n_head, p, head_dim): the cache starts
        #                          with them, so every token attends to p positions it never read;
        #   extra_embeddings(B) -> (B, p, C): put before the input's token embeddings, at positions 0 .. p-1.
        # Either takes p positions of the context from the text. Empty, they change nothing.
        self.extra_key_values: nn.Module | None = None
        self.extra_embeddings: nn.Module | None = None

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def reserved_positions(self) -> int:
        """Context positions the extra key/value or embedding slots take (0 when both are empty)."""
        return sum(slot.num_virtual_tokens for slot in (self.extra_key_values, self.extra_embeddings) if slot is not None)

    def text_positions(self) -> int:
        """How many tokens of text fit in the context: block_size less the reserved positions."""
        return self.config.block_size - self.reserved_positions()

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameters counted once each (the tied head shares the embedding's)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """idx (B, T) token ids -> logits (B, T, vocab_size), and the mean cross-entropy if targets are given.

        With a `cache`, idx holds only the new tokens: they sit at positions
        cache.length, cache.length + 1, ... and their keys and values are added to it.
        """
        B, T = idx.shape
        x = self.token_embedding(idx)  # (B, T, C)
        virtual = 0  # extra input embeddings before the text, only on the first call of a cache
        if self.extra_embeddings is not None and (cache is None or cache.length == 0):
            prompt = self.extra_embeddings(B)  # (B, p, C)
            virtual = prompt.size(1)
            x = torch.cat([prompt, x], dim=1)  # (B, p + T, C)
        if self.extra_key_values is not None:
            if cache is None:
                cache = KVCache(len(self.blocks))  # a private cache that starts with the extra keys and values
            if cache.length == 0:
                cache.fill(self.extra_key_values(B))
        start = cache.length if cache is not None else 0
        length = x.size(1)
        if start + length > self.config.block_size:
            raise ValueError(f"sequence of length {start + length} is longer than block_size {self.config.block_size}")
        positions = torch.arange(start, start + length, device=idx.device)  # (p + T,) or (T,)
        x = x + self.position_embedding(positions)  # (B, T, C)
        x = self.embedding_dropout(x)
        for index, block in enumerate(self.blocks):
            x = block(x, cache.layers[index] if cache is not None else None)
        x = x[:, virtual:]  # only the text's positions predict tokens: (B, T, C)
        logits = self.lm_head(self.final_norm(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            # flatten positions: logits (B*T, vocab_size) against targets (B*T,)
            loss = F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))
        return logits, loss

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
        generator: torch.Generator | None = None, use_cache: bool = False,
    ) -> torch.Tensor:
        """Append `max_new_tokens` tokens to idx (B, T). temperature=0 means greedy (argmax) decoding.

        use_cache=True keeps every position's keys and values (KVCache), so each
        new token costs one position instead of the whole context. The position
        embedding is absolute, so once the sequence is longer than block_size every
        cached key belongs to a shifted position: from then on each step re-encodes
        the last block_size tokens, exactly as the uncached path does.
        """
        cache, fed = None, 0  # fed: how many tokens of idx the cache has seen
        limit = self.text_positions()  # block_size, less any positions prefix or prompt tuning reserve
        for _ in range(max_new_tokens):
            if use_cache and idx.size(1) <= limit:
                if cache is None:
                    cache = KVCache(len(self.blocks))
                logits, _ = self(idx[:, fed:], cache=cache)  # only the tokens the cache has not seen
                fed = idx.size(1)
            else:
                context = idx[:, -limit:]  # the model sees at most block_size tokens (less reserved positions)
                logits, _ = self(context)
            logits = logits[:, -1, :]  # (B, vocab_size): only the last position predicts the next token
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth_best = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth_best, float("-inf"))
                probabilities = F.softmax(logits, dim=-1)
                next_id = torch.multinomial(probabilities, num_samples=1, generator=generator)
            idx = torch.cat((idx, next_id), dim=1)
        return idx

    def resize_token_embeddings(self, new_vocab_size: int) -> None:
        """Grow the (tied) vocabulary to new_vocab_size, keeping every existing row as it is.

        Old rows are copied bit for bit, so every old token's embedding and logit
        is unchanged. New rows start at the mean of the old ones plus small noise:
        a new word then starts with an ordinary logit instead of a random one, so
        it neither dominates nor vanishes from the softmax (Hewitt, 2021).
        """
        old_weight = self.token_embedding.weight
        old_vocab_size, n_embd = old_weight.shape
        if new_vocab_size < old_vocab_size:
            raise ValueError(f"cannot shrink the vocabulary from {old_vocab_size} to {new_vocab_size}")
        if new_vocab_size == old_vocab_size:
            return
        new_embedding = nn.Embedding(new_vocab_size, n_embd, device=old_weight.device, dtype=old_weight.dtype)
        with torch.no_grad():
            new_embedding.weight[:old_vocab_size] = old_weight
            mean_row = old_weight.mean(dim=0)
            noise = torch.randn(new_vocab_size - old_vocab_size, n_embd, device=old_weight.device) * 0.02
            new_embedding.weight[old_vocab_size:] = mean_row + noise
        new_embedding.weight.requires_grad_(old_weight.requires_grad)
        self.token_embedding = new_embedding
        self.lm_head = nn.Linear(n_embd, new_vocab_size, bias=False, device=old_weight.device)
        self.lm_head.weight = self.token_embedding.weight  # keep the tie
        self.config.vocab_size = new_vocab_size
