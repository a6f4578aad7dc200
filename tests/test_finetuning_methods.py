import torch

from conftest import tiny_model
from lora import LoRAConfig
from experiment.training.methods import prepare_full, prepare_layer_freezing, prepare_lora
from minigpt.training import TrainConfig, train

DATA = torch.randint(56, (600,), generator=torch.Generator().manual_seed(0))


def grown_model():
    model = tiny_model(vocab_size=50, n_layer=4)
    model.resize_token_embeddings(56)
    return model


def quick_train(model):
    config = TrainConfig(steps=4, batch_size=4, lr=1e-2, warmup_steps=1, eval_interval=4, eval_batches=1)
    train(model, DATA, DATA, config, "cpu", show_progress=False)


def test_full_fine_tuning_trains_every_parameter():
    model = grown_model()
    prepare_full(model, 50)
    assert all(p.requires_grad for p in model.parameters())


def test_layer_freezing_trains_exactly_the_top_blocks_final_norm_and_new_rows():
    model = grown_model()
    old_rows = model.token_embedding.weight[:50].detach().clone()
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("blocks.0.", "blocks.1.", "position"))}
    prepare_layer_freezing(model, 50, train_last_k=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("blocks.2.", "blocks.3.", "final_norm.")) or n == "token_embedding.new_rows" for n in trainable)
    assert any(n.startswith("blocks.2.") for n in trainable) and any(n.startswith("blocks.3.") for n in trainable)
    assert {"final_norm.weight", "final_norm.bias", "token_embedding.new_rows"} <= trainable
    new_rows_before = model.token_embedding.new_rows.detach().clone()
    quick_train(model)
    assert torch.equal(model.token_embedding.weight[:50], old_rows)
    assert not torch.equal(model.token_embedding.new_rows, new_rows_before)
    for name, before in frozen_before.items():
        assert torch.equal(dict(model.named_parameters())[name], before), name


def test_lora_keeps_old_embedding_rows_bit_identical_and_trains_new_rows():
    model = grown_model()
    old_rows = model.token_embedding.weight[:50].detach().clone()
    prepare_lora(model, 50, LoRAConfig(r=2, lora_alpha=4))
    new_rows_before = model.token_embedding.new_rows.detach().clone()
    quick_train(model)
    assert torch.equal(model.token_embedding.weight[:50], old_rows)
    assert not torch.equal(model.token_embedding.new_rows, new_rows_before)


def test_split_rows_keep_the_output_head_tied():
    model = grown_model()
    idx = torch.randint(56, (2, 8))
    before, _ = model(idx)
    prepare_layer_freezing(model, 50, train_last_k=1)
    after, _ = model(idx)
    assert torch.equal(before, after)
    assert model.lm_head.new_rows is model.token_embedding.new_rows
    assert model.lm_head.old_rows is model.token_embedding.old_rows


def test_trainable_counts_include_biases_and_layer_norms_for_full_and_freezing():
    """A count that skipped 1-D parameters would pass for LoRA (only matrices train) but not here."""
    from lora import count_parameters
    full, freeze = grown_model(), grown_model()
    prepare_full(full, 50)
    prepare_layer_freezing(freeze, 50, 2)
    for model in (full, freeze):
        unique = {id(p): p for p in model.parameters()}.values()
        by_hand = sum(p.numel() for p in unique if p.requires_grad)
        one_dimensional = sum(p.numel() for p in unique if p.requires_grad and p.dim() == 1)
        assert one_dimensional > 0 and count_parameters(model)["trainable"] == by_hand
    assert count_parameters(full)["trainable"] == count_parameters(full)["total"]
