import copy

import torch

from conftest import tiny_model
from lora import LoRAConfig, LoRALinear, lora_layers
from minigpt.config import GPTConfig
from experiment.training.methods import merge_lora_model, prepare_lora
from minigpt.model import MiniGPT


def lora_model_with_nonzero_updates(seed: int = 0):
    """A MiniGPT with 5 new words and LoRA on Q, K, V, O, with random non-zero A and B."""
    model = tiny_model(vocab_size=50)
    model.resize_token_embeddings(55)
    prepare_lora(model, 50, LoRAConfig(r=4, lora_alpha=8))
    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_A.weight.normal_(std=0.3)
            layer.lora_B.weight.normal_(std=0.3)
        model.token_embedding.new_rows.normal_(std=0.1)
    return model.eval()


def test_merged_model_matches_adapter_outputs():
    model = lora_model_with_nonzero_updates()
    merged = merge_lora_model(model)
    idx = torch.randint(55, (4, 16))
    lora_logits, _ = model(idx)
    merged_logits, _ = merged(idx)
    assert (lora_logits - merged_logits).abs().max().item() < 1e-5
    # and the LoRA update is large enough that the test means something: without it the logits move
    without_update = copy.deepcopy(model)
    for layer in lora_layers(without_update).values():
        torch.nn.init.zeros_(layer.lora_B.weight)
    assert (lora_logits - without_update(idx)[0]).abs().max().item() > 1e-2


def test_merged_model_is_a_plain_minigpt_that_loads_strictly():
    merged = merge_lora_model(lora_model_with_nonzero_updates())
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    fresh = MiniGPT(GPTConfig(**{**merged.config.to_dict()}))
    fresh.load_state_dict(merged.state_dict(), strict=True)
    idx = torch.randint(55, (2, 10))
    assert torch.equal(fresh.eval()(idx)[0], merged(idx)[0])
    assert merged.lm_head.weight is merged.token_embedding.weight


def test_merged_weight_is_w_plus_alpha_over_r_times_b_a():
    model = lora_model_with_nonzero_updates()
    layer = model.blocks[1].attention.v_proj
    expected = layer.base.weight + (8 / 4) * layer.lora_B.weight @ layer.lora_A.weight
    merged = merge_lora_model(model)
    torch.testing.assert_close(merged.blocks[1].attention.v_proj.weight, expected, rtol=0, atol=1e-7)


def test_merge_lora_leaves_the_adapter_model_unmerged():
    model = lora_model_with_nonzero_updates()
    before = model.blocks[0].attention.q_proj.base.weight.detach().clone()
    merge_lora_model(model)
    merge_lora_model(model)
    assert torch.equal(model.blocks[0].attention.q_proj.base.weight, before)
    assert not any(layer.merged for layer in lora_layers(model).values())
