"""The key/value cache: the same tokens as the uncached path, one position per step, and its limits."""

import pytest
import torch

from conftest import tiny_model
from minigpt.model import KVCache


@pytest.mark.parametrize("prompt_length, new_tokens", [(1, 10), (5, 11), (12, 30), (16, 20)])
def test_cached_greedy_generation_gives_exactly_the_uncached_tokens(prompt_length, new_tokens):
    """Block size is 16: (12, 30) and (16, 20) run past the context, where the cache must fall back."""
    model = tiny_model(vocab_size=50, seed=prompt_length)
    idx = torch.randint(50, (2, prompt_length), generator=torch.Generator().manual_seed(prompt_length))
    uncached = model.generate(idx, new_tokens, temperature=0.0)
    assert torch.equal(model.generate(idx, new_tokens, temperature=0.0, use_cache=True), uncached)


def test_cached_sampling_follows_the_same_random_stream():
    model, idx = tiny_model(), torch.tensor([[3, 4, 5]])
    runs = [model.generate(idx, 12, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(7), use_cache=c)
            for c in (False, True)]
    assert torch.equal(*runs)


def test_a_step_with_the_cache_reads_one_position_and_matches_the_full_forward():
    model, idx = tiny_model(), torch.randint(50, (1, 9))
    cache = KVCache(len(model.blocks))
    model(idx[:, :8], cache=cache)
    step_logits, _ = model(idx[:, 8:], cache=cache)
    assert step_logits.shape[1] == 1 and cache.length == 9
    torch.testing.assert_close(step_logits[:, -1], model(idx)[0][:, -1], rtol=0, atol=1e-5)


def test_the_cache_refuses_positions_past_the_context():
    model = tiny_model()
    cache = KVCache(len(model.blocks))
    model(torch.zeros(1, 16, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="longer than block_size"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
