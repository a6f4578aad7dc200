import torch

from conftest import tiny_model
from minigpt.config import GPTConfig
from minigpt.model import MiniGPT


def test_logits_have_shape_batch_time_vocab():
    model = tiny_model(vocab_size=37)
    logits, loss = model(torch.randint(37, (3, 11)))
    assert logits.shape == (3, 11, 37)
    assert loss is None


def test_loss_of_an_untrained_model_is_near_log_vocab():
    model = tiny_model(vocab_size=50)
    idx = torch.randint(50, (4, 16))
    _, loss = model(idx, idx)
    assert abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.5


def test_changing_a_later_token_never_changes_earlier_logits():
    model = tiny_model()
    idx = torch.randint(50, (1, 12))
    changed = idx.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % 50
    before, _ = model(idx)
    after, _ = model(changed)
    assert torch.equal(before[0, :7], after[0, :7])
    assert not torch.allclose(before[0, 7:], after[0, 7:])


def test_output_head_is_tied_to_the_token_embedding():
    model = tiny_model()
    assert model.lm_head.weight is model.token_embedding.weight
    with torch.no_grad():
        model.token_embedding.weight[5] += 1.0
    assert torch.equal(model.lm_head.weight[5], model.token_embedding.weight[5])
    # counted once: the state dict lists the shared matrix twice (token_embedding.weight, lm_head.weight)
    listed = sum(t.numel() for t in model.state_dict().values())
    assert model.num_parameters() == listed - model.token_embedding.weight.numel()


def test_attention_uses_four_named_projections():
    names = {name for name, _ in tiny_model().named_modules()}
    for projection in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert f"blocks.0.attention.{projection}" in names


def test_resize_keeps_old_rows_and_old_token_logits_bit_identical():
    model = tiny_model(vocab_size=40)
    idx = torch.randint(40, (2, 10))
    old_rows = model.token_embedding.weight.detach().clone()
    old_logits, _ = model(idx)
    model.resize_token_embeddings(46)
    new_logits, _ = model(idx)
    assert model.config.vocab_size == 46 and new_logits.shape[-1] == 46
    assert torch.equal(model.token_embedding.weight[:40], old_rows)
    assert torch.equal(new_logits[..., :40], old_logits)
    assert model.lm_head.weight is model.token_embedding.weight


def test_resize_does_not_change_the_callers_config():
    config = GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = MiniGPT(config)
    model.resize_token_embeddings(35)
    assert config.vocab_size == 30 and model.config.vocab_size == 35


def test_greedy_generation_is_deterministic_and_appends_tokens():
    model = tiny_model()
    start = torch.tensor([[1, 2, 3]])
    first = model.generate(start, 20, temperature=0.0)
    second = model.generate(start, 20, temperature=0.0)
    assert first.shape == (1, 23)
    assert torch.equal(first, second)
    assert torch.equal(first[:, :3], start)


def test_sampling_with_top_k_1_equals_greedy():
    model = tiny_model()
    start = torch.tensor([[4, 5]])
    sampled = model.generate(start, 10, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, model.generate(start, 10, temperature=0.0))
