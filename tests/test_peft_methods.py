"""peft_methods/: each method's parameter count, its promise at initialisation, its equation, its merge, the base left
bit-identical by training, and its bad settings refused in one line."""

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model
from experiment.training.other_methods.preparation import base_tensors_changed
from minigpt.model import MiniGPT
from peft_methods import (AdaptedOutput, BottleneckAdapterConfig, IA3Config, IA3Linear, PeftMethodError, PrefixTuningConfig,
                          PromptTuningConfig, adapter_parameter_count, apply_bitfit, apply_bottleneck_adapters, apply_ia3,
                          apply_prefix_tuning, apply_prompt_tuning, bitfit_parameter_count, ia3_parameter_count, merge_ia3,
                          prefix_parameter_count, prompt_parameter_count)

TOKENS = torch.randint(0, 50, (3, 10), generator=torch.Generator().manual_seed(0))


def apply(name: str, model):
    """Apply one method with small settings; return its config (None for BitFit)."""
    if name == "adapters":
        config = BottleneckAdapterConfig(adapter_size=3)
        apply_bottleneck_adapters(model, config)
    elif name in ("prefix", "prefix-direct"):
        config = PrefixTuningConfig(num_virtual_tokens=4, prefix_projection=name == "prefix", encoder_hidden_size=5)
        apply_prefix_tuning(model, config)
    elif name == "prompt":
        config = PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT")
        apply_prompt_tuning(model, config, [3, 7])
    elif name == "ia3":
        config = IA3Config()
        apply_ia3(model, config)
    else:
        config = None
        apply_bitfit(model)
    return config


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["adapters", "prefix", "prefix-direct", "prompt", "bitfit", "ia3"])
def test_each_methods_trainable_parameter_count_equals_its_docstring_formula(name):
    model = tiny_model()
    config = apply(name, model)
    c = model.config  # n_layer 2, n_embd 16
    expected = {"adapters": lambda: adapter_parameter_count(c.n_embd, 3, 2 * c.n_layer),
                "prefix": lambda: prefix_parameter_count(config, c.n_layer, c.n_embd),
                "prefix-direct": lambda: prefix_parameter_count(config, c.n_layer, c.n_embd),
                "prompt": lambda: prompt_parameter_count(config, c.n_embd),
                "bitfit": lambda: bitfit_parameter_count(c.n_layer, c.n_embd),
                "ia3": lambda: ia3_parameter_count(c.n_layer, c.n_embd)}[name]()
    assert trainable(model) == expected
    # and the formulas' numbers written out for this model (d = 16, L = 2, m = 3, p = 4, h = 5)
    assert {"adapters": 4 * (2 * 3 * 16 + 3 + 16), "prefix": 4 * 16 + (5 * 16 + 5) + (64 * 5 + 64), "prefix-direct": 4 * 64,
            "prompt": 4 * 16, "bitfit": 2 * 11 * 16 + 16, "ia3": 2 * 6 * 16}[name] == expected


@pytest.mark.parametrize("name", ["adapters", "prefix", "prompt", "bitfit", "ia3"])
def test_training_moves_the_method_and_leaves_the_base_bit_identical(name):
    base = tiny_model()
    model = copy.deepcopy(base).train()
    apply(name, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for _ in range(3):  # plain gradient steps: every tensor with a gradient moves
        model.zero_grad()
        model(TOKENS[:, :-1].contiguous(), TOKENS[:, 1:].contiguous())[1].backward()
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter -= 0.1 * parameter.grad
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad), "a trained tensor did not move"
    changed = base_tensors_changed(model, base)
    if name == "bitfit":  # the biases are base tensors: exactly they moved, no weight matrix, embedding or LayerNorm scale
        assert changed and all(n.endswith("bias") for n in changed)
    else:
        assert changed == []


@pytest.mark.parametrize("name", ["adapters", "ia3", "bitfit"])
def test_adapters_ia3_and_bitfit_start_exactly_equal_to_the_base(name):
    base = tiny_model()
    model = copy.deepcopy(base)
    apply(name, model)
    assert torch.equal(model(TOKENS)[0], base(TOKENS)[0])


@pytest.mark.parametrize("name", ["prefix", "prompt"])
def test_prefix_and_prompt_tuning_change_the_output_at_init_and_take_p_context_positions(name):
    base = tiny_model()
    model = copy.deepcopy(base)
    apply(name, model)
    assert model.text_positions() == base.config.block_size - 4
    assert not torch.allclose(model(TOKENS)[0], base(TOKENS)[0], atol=1e-3)  # p attended positions (prefix) or inputs (prompt)
    assert model(TOKENS)[0].shape == base(TOKENS)[0].shape  # logits for the text positions only
    with pytest.raises(ValueError, match="longer than block_size"):
        model(torch.zeros(1, base.config.block_size - 3, dtype=torch.long))


@pytest.mark.parametrize("name", ["prefix", "prompt", "adapters"])
def test_generation_with_the_key_value_cache_matches_generation_without(name):
    model = tiny_model()
    apply(name, model)
    with torch.no_grad():
        for parameter in model.parameters():  # away from the identity init, so the method really acts
            if parameter.requires_grad:
                parameter.add_(0.3 * torch.randn_like(parameter))
    prompt = TOKENS[:1, :5]
    cached = model.generate(prompt, 15, temperature=0.0, use_cache=True)  # runs past the 12 text positions
    assert torch.equal(cached, model.generate(prompt, 15, temperature=0.0, use_cache=False))


def test_the_houlsby_adapter_computes_its_equation_and_sits_after_o_proj_and_down_proj():
    model = tiny_model()
    wrapped = apply_bottleneck_adapters(model, BottleneckAdapterConfig(adapter_size=3))
    assert sorted(n.rpartition(".")[2] for n in wrapped) == ["down_proj", "down_proj", "o_proj", "o_proj"]
    layer = wrapped["blocks.0.attention.o_proj"]
    torch.nn.init.normal_(layer.adapter_up.weight)
    x = torch.randn(2, 5, 16)
    h = x @ layer.base.weight.T + layer.base.bias
    expected = h + F.gelu(h @ layer.adapter_down.weight.T + layer.adapter_down.bias) @ layer.adapter_up.weight.T + layer.adapter_up.bias
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert isinstance(model.blocks[1].feed_forward.down_proj, AdaptedOutput)


def test_bitfit_trains_every_bias_of_its_equation_and_nothing_else():
    model = tiny_model()
    apply_bitfit(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    per_block = ["attention_norm.bias", "attention.q_proj.bias", "attention.k_proj.bias", "attention.v_proj.bias",
                 "attention.o_proj.bias", "feed_forward_norm.bias", "feed_forward.up_proj.bias", "feed_forward.down_proj.bias"]
    assert names == {f"blocks.{i}.{n}" for i in range(2) for n in per_block} | {"final_norm.bias"}


def test_bitfit_refuses_a_model_without_biases():
    with pytest.raises(PeftMethodError, match="no bias terms"):
        apply_bitfit(tiny_model(bias=False))


def perturbed(model):
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def test_ia3_scales_keys_values_and_the_feed_forward_activation_and_merges_into_a_plain_minigpt():
    torch.manual_seed(1)
    model = tiny_model()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.1)  # so the output scale of a biased layer is exercised
    apply_ia3(model, IA3Config())
    perturbed(model)
    k_proj = model.blocks[0].attention.k_proj
    x = torch.randn(2, 3, 16)
    assert torch.allclose(k_proj(x), (x @ k_proj.base.weight.T + k_proj.base.bias) * k_proj.ia3_scale, atol=1e-6)
    hidden = torch.randn(2, 3, 64)
    down = model.blocks[0].feed_forward.down_proj
    assert torch.allclose(down(hidden), (hidden * down.ia3_scale) @ down.base.weight.T + down.base.bias, atol=1e-6)
    merged = merge_ia3(copy.deepcopy(model))
    assert not any(isinstance(m, IA3Linear) for m in merged.modules())
    plain = MiniGPT(merged.config)
    plain.load_state_dict(merged.state_dict(), strict=True)
    assert torch.allclose(plain(TOKENS)[0], model(TOKENS)[0], atol=1e-5)


def test_bitfit_merged_model_is_a_plain_minigpt_with_the_same_outputs(tmp_path):
    from experiment.training.new_token_rows import split_new_token_rows
    from experiment.training.other_methods.result_directory import merged_model

    model = tiny_model()
    split_new_token_rows(model, 50)
    apply_bitfit(model)
    perturbed(model)
    merged = merged_model("bitfit", model)
    plain = MiniGPT(merged.config)
    plain.load_state_dict(merged.state_dict(), strict=True)
    assert torch.equal(plain(TOKENS)[0], model(TOKENS)[0])


def test_prefix_folding_drops_the_mlp_and_keeps_the_keys_and_values():
    model = tiny_model()
    config = apply(name="prefix", model=model)
    perturbed(model)
    before = model(TOKENS)[0]
    model.extra_key_values.fold()
    assert model.extra_key_values.transform is None
    assert sum(p.numel() for p in model.extra_key_values.parameters()) == prefix_parameter_count(config, 2, 16, folded=True)
    assert torch.allclose(model(TOKENS)[0], before, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda m: apply_prefix_tuning(m, PrefixTuningConfig(num_virtual_tokens=16)), "leaves no position for text"),
    (lambda m: apply_prefix_tuning(m, PrefixTuningConfig(num_virtual_tokens=0)), "num_virtual_tokens must be at least 1"),
    (lambda m: apply_prompt_tuning(m, PromptTuningConfig(num_virtual_tokens=0)), "num_virtual_tokens must be at least 1"),
    (lambda m: apply_prompt_tuning(m, PromptTuningConfig(num_virtual_tokens=3), []), "no words in the vocabulary"),
    (lambda m: apply_bottleneck_adapters(m, BottleneckAdapterConfig(adapter_size=0)), "adapter_size must be a positive integer"),
    (lambda m: apply_ia3(m, IA3Config(target_modules=("k_proj",), feedforward_modules=("down_proj",))), "must also be in target_modules"),
    (lambda m: apply_ia3(m, IA3Config(target_modules=("key",), feedforward_modules=())), "'key' matches no Linear"),
])
def test_impossible_settings_are_refused_with_the_fix(make, message):
    with pytest.raises(PeftMethodError, match=message):
        make(tiny_model())
