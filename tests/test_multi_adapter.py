"""lora/multi_adapter.py: several named adapters on one base, exact switching, disabling and mixing."""

import copy

import pytest
import torch
import torch.nn as nn

from conftest import tiny_model
from lora import (LoRAConfig, LoRAError, active_adapters, adapter_names, add_adapter, apply_lora, delete_adapter,
                  disable_adapters, lora_layers, set_adapter, set_adapter_weights)
from lora.multi_adapter import adapter_state_dict, factor_average_delta, load_adapter_state_dict, multi_lora_layers

COOKING = LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
SPORT = LoRAConfig(r=3, lora_alpha=3, target_modules=["k_proj", "v_proj", "o_proj"])


def randomize_b(layers, name, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_B[name].weight.copy_(torch.randn(layer.lora_B[name].weight.shape, generator=generator) * 0.3)


@pytest.fixture
def two_adapters():
    base = tiny_model()
    model = copy.deepcopy(base)
    randomize_b(add_adapter(model, "cooking", COOKING), "cooking", 1)
    randomize_b(add_adapter(model, "sport", SPORT), "sport", 2)
    return base, model.eval(), torch.randint(50, (3, 12), generator=torch.Generator().manual_seed(0))


def test_all_adapters_disabled_give_the_base_logits_bit_for_bit(two_adapters):
    base, model, idx = two_adapters
    set_adapter(model, "cooking")
    with disable_adapters(model):
        assert torch.equal(model(idx)[0], base(idx)[0])
    assert active_adapters(model) == {"cooking": 1.0}  # the previous choice comes back
    assert not torch.equal(model(idx)[0], base(idx)[0])
    set_adapter_weights(model, {})
    assert torch.equal(model(idx)[0], base(idx)[0])


@pytest.mark.parametrize("name, config", [("cooking", COOKING), ("sport", SPORT)])
def test_one_active_adapter_equals_a_model_that_only_ever_had_it(two_adapters, name, config):
    base, model, idx = two_adapters
    single = copy.deepcopy(base)
    apply_lora(single, config)
    with torch.no_grad():
        for layer_name, layer in lora_layers(single).items():
            multi = model.get_submodule(layer_name)
            layer.lora_A.weight.copy_(multi.lora_A[name].weight)
            layer.lora_B.weight.copy_(multi.lora_B[name].weight)
    set_adapter(model, name)
    assert torch.equal(model(idx)[0], single.eval()(idx)[0])


def test_switching_many_times_leaves_the_base_weights_bit_identical(two_adapters):
    base, model, idx = two_adapters
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(50):
        set_adapter(model, ["cooking", "sport"][step % 2])
        model(idx)
        set_adapter_weights(model, {"cooking": 0.3, "sport": 0.7})
        with disable_adapters(model):
            model(idx)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    set_adapter_weights(model, {})
    assert torch.equal(model(idx)[0], base(idx)[0])


def test_the_weighted_mix_equals_the_sum_of_the_updates(two_adapters):
    base, model, idx = two_adapters
    weights = {"cooking": 0.25, "sport": 0.75}
    expected = copy.deepcopy(base)
    with torch.no_grad():
        for layer_name, layer in multi_lora_layers(model).items():
            delta = sum(w * layer.delta_weight(n) for n, w in weights.items() if n in layer.lora_A)
            expected.get_submodule(layer_name).weight += delta
    set_adapter_weights(model, weights)
    torch.testing.assert_close(model(idx)[0], expected(idx)[0], rtol=0, atol=1e-5)
    set_adapter_weights(model, {"cooking": 1.0, "sport": 0.0})
    only_cooking = model(idx)[0]
    set_adapter(model, "cooking")
    assert torch.equal(only_cooking, model(idx)[0])


def test_averaging_a_and_b_is_not_mixing_the_updates():
    layer_model = nn.Sequential(nn.Linear(8, 8))
    a, b = LoRAConfig(r=2, lora_alpha=2, target_modules=["0"]), LoRAConfig(r=2, lora_alpha=4, target_modules=["0"])
    randomize_b(add_adapter(layer_model, "a", a), "a", 3)
    randomize_b(add_adapter(layer_model, "b", b), "b", 4)
    layer = layer_model[0]
    exact = 0.5 * layer.delta_weight("a") + 0.5 * layer.delta_weight("b")
    averaged = factor_average_delta(layer, {"a": 0.5, "b": 0.5})
    assert (exact - averaged).abs().max() > 1e-3  # cross terms B_a A_b that neither adapter learned
    assert torch.linalg.matrix_rank(exact) == 4  # rank up to the sum of the ranks
    torch.testing.assert_close(factor_average_delta(layer, {"a": 1.0}), layer.delta_weight("a"))


def test_deleting_an_adapter_keeps_the_other_and_frees_its_name(two_adapters):
    base, model, idx = two_adapters
    set_adapter(model, "sport")
    sport_logits = model(idx)[0]
    delete_adapter(model, "cooking")
    assert adapter_names(model) == ["sport"]
    assert torch.equal(model(idx)[0], sport_logits)
    with pytest.raises(LoRAError, match="unknown adapter 'cooking'"):
        set_adapter(model, "cooking")
    add_adapter(model, "cooking", COOKING)  # the name can be used again


def test_state_dict_round_trip_and_errors(two_adapters):
    base, model, idx = two_adapters
    state = adapter_state_dict(model, "cooking")
    assert len(state) == 2 * 2 * 2 and all(".lora_A." in k or ".lora_B." in k for k in state)
    other = copy.deepcopy(base)
    add_adapter(other, "cooking", COOKING)
    load_adapter_state_dict(other, "cooking", state)
    set_adapter(model, "cooking")
    set_adapter(other, "cooking")
    assert torch.equal(model(idx)[0], other(idx)[0])
    with pytest.raises(LoRAError, match="does not fit"):
        load_adapter_state_dict(other, "cooking", adapter_state_dict(model, "sport"))
    with pytest.raises(LoRAError, match="already loaded"):
        add_adapter(model, "sport", SPORT)
    with pytest.raises(LoRAError, match="must be a finite number"):
        set_adapter_weights(model, {"sport": "half"})
    with pytest.raises(LoRAError, match="matches no nn.Linear"):
        add_adapter(model, "other", LoRAConfig(target_modules=["nothing"]))
