import math

import pytest
import torch
import torch.nn as nn

from lora.layer import LoRALinear


def layer_with_random_update(r=4, alpha=8.0, dropout=0.0, seed=0) -> LoRALinear:
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(12, 10), r=r, lora_alpha=alpha, lora_dropout=dropout)
    with torch.no_grad():
        layer.lora_B.weight.normal_()  # B is zero after init; make the update non-zero
    return layer.eval()


def test_shapes_follow_the_loralib_layout():
    layer = LoRALinear(nn.Linear(12, 10), r=3, lora_alpha=6)
    assert layer.lora_A.weight.shape == (3, 12)  # (r, in_features)
    assert layer.lora_B.weight.shape == (10, 3)  # (out_features, r)
    assert layer.scaling == 2.0
    assert layer.delta_weight().shape == layer.base.weight.shape


def test_b_starts_at_zero_so_the_layer_starts_equal_to_its_base():
    base = nn.Linear(12, 10)
    x = torch.randn(5, 12)
    expected = base(x)
    layer = LoRALinear(base, r=4, lora_alpha=8)
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    assert torch.count_nonzero(layer.lora_A.weight) > 0
    assert torch.equal(layer(x), expected)


def test_forward_is_w_x_plus_b_plus_scaled_b_a_x():
    layer = layer_with_random_update(r=4, alpha=6.0)
    x = torch.randn(3, 7, 12)
    W, b = layer.base.weight, layer.base.bias
    A, B = layer.lora_A.weight, layer.lora_B.weight
    expected = x @ W.T + b + (6.0 / 4) * (x @ A.T @ B.T)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)


def test_only_a_and_b_are_trainable():
    layer = LoRALinear(nn.Linear(12, 10), r=2, lora_alpha=2)
    trainable = {name for name, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A.weight", "lora_B.weight"}


def test_dropout_applies_to_the_lora_branch_input_only():
    layer = layer_with_random_update(dropout=0.5).train()
    x = torch.randn(4, 12)
    torch.manual_seed(123)
    output = layer(x)
    torch.manual_seed(123)  # the same dropout mask, applied by hand to the branch's input
    dropped = torch.nn.functional.dropout(x, p=0.5, training=True)
    expected = layer.base(x) + layer.scaling * dropped @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(output, layer.eval()(x))  # dropout really was active in training mode


def test_merge_folds_the_scaled_update_into_the_weight_once():
    layer = layer_with_random_update()
    original = layer.base.weight.detach().clone()
    update = layer.delta_weight().detach().clone()
    layer.merge()
    torch.testing.assert_close(layer.base.weight, original + update, rtol=0, atol=1e-7)
    layer.merge()  # second merge: no-op
    torch.testing.assert_close(layer.base.weight, original + update, rtol=0, atol=1e-7)
    assert layer.merged


def test_merged_and_unmerged_outputs_match():
    layer = layer_with_random_update()
    x = torch.randn(6, 12)
    unmerged = layer(x)
    layer.merge()
    torch.testing.assert_close(layer(x), unmerged, rtol=0, atol=1e-5)


def test_unmerge_restores_the_original_weight():
    layer = layer_with_random_update()
    original = layer.base.weight.detach().clone()
    layer.unmerge()  # not merged yet: no-op
    assert torch.equal(layer.base.weight, original)
    layer.merge()
    layer.unmerge()
    assert not layer.merged
    assert (layer.base.weight - original).abs().max().item() < 1e-6


def test_merging_does_not_depend_on_eval_or_train_mode():
    layer = layer_with_random_update().train()
    before = layer.base.weight.detach().clone()
    layer.eval()
    assert torch.equal(layer.base.weight, before) and not layer.merged


def test_kaiming_init_matches_nn_linear_bounds_and_gaussian_has_std_one_over_r():
    torch.manual_seed(0)
    kaiming = LoRALinear(nn.Linear(256, 256), r=64, lora_alpha=64, init_lora_weights="kaiming")
    bound = 1 / math.sqrt(256)  # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert kaiming.lora_A.weight.abs().max().item() <= bound
    assert kaiming.lora_A.weight.abs().max().item() > 0.9 * bound
    gaussian = LoRALinear(nn.Linear(256, 256), r=8, lora_alpha=8, init_lora_weights="gaussian")
    assert abs(gaussian.lora_A.weight.std().item() - 1 / 8) < 0.01


def test_an_unknown_init_is_refused():
    with pytest.raises(ValueError, match="unknown init"):
        LoRALinear(nn.Linear(4, 4), r=2, lora_alpha=2, init_lora_weights="zeros")


def test_training_through_a_merged_layer_warns_that_a_and_b_get_no_gradient():
    layer = layer_with_random_update()
    layer.merge()
    layer.train()
    with pytest.warns(UserWarning, match="call unmerge"):
        layer(torch.randn(2, 12, requires_grad=True)).sum().backward()
    assert layer.lora_A.weight.grad is None
