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


@pytest.mark.parametrize("r, alpha", [(1, 1.0), (2, 8.0), (5, 3.0), (7, 16.0)])
def test_forward_is_the_formula_for_several_ranks_and_alphas_on_a_non_square_layer(r, alpha):
    torch.manual_seed(r)
    layer = LoRALinear(nn.Linear(12, 7), r=r, lora_alpha=alpha)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(3, 12, dtype=torch.float64)
    W, b = layer.base.weight.double(), layer.base.bias.double()
    A, B = layer.lora_A.weight.double(), layer.lora_B.weight.double()
    expected = x @ W.T + b + (alpha / r) * (x @ A.T @ B.T)  # computed in float64, independently of the layer
    torch.testing.assert_close(layer(x.float()).double(), expected, rtol=0, atol=1e-5)
    assert layer.scaling == pytest.approx(alpha / r)


def test_the_update_has_rank_at_most_r():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(12, 10).double(), r=3, lora_alpha=6)  # float64: no rounding noise in the rank
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    assert torch.linalg.matrix_rank(layer.delta_weight().detach()).item() == 3  # (10, 12), rank 3, not 10


def test_at_step_zero_a_gets_exactly_zero_gradient_and_b_a_non_zero_one():
    """B = 0 makes dL/dA = s B^T g x^T vanish; A random makes dL/dB = s g (A x)^T non-zero: B learns first."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(12, 10), r=4, lora_alpha=8).train()
    layer(torch.randn(5, 12)).pow(2).sum().backward()
    assert layer.lora_A.weight.grad is not None and torch.count_nonzero(layer.lora_A.weight.grad) == 0
    assert layer.lora_B.weight.grad is not None and layer.lora_B.weight.grad.abs().sum() > 0
    assert layer.base.weight.grad is None and layer.base.bias.grad is None  # the frozen base gets no gradient


def test_dropout_is_off_in_eval_mode():
    layer = layer_with_random_update(dropout=0.9).eval()
    x = torch.randn(4, 12)
    expected = layer.base(x) + layer.scaling * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), layer(x), rtol=0, atol=0)  # deterministic: no mask at all


def test_merge_leaves_the_bias_alone_and_works_on_a_non_square_layer():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(5, 9), r=2, lora_alpha=3).eval()
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    bias = layer.base.bias.detach().clone()
    x = torch.randn(4, 5)
    unmerged = layer(x)
    layer.merge()
    assert torch.equal(layer.base.bias, bias)
    assert layer.base.weight.shape == (9, 5)
    torch.testing.assert_close(layer(x), unmerged, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_a_and_b_take_the_base_layers_dtype(dtype):
    layer = LoRALinear(nn.Linear(8, 6).to(dtype), r=2, lora_alpha=4)
    assert layer.lora_A.weight.dtype == dtype and layer.lora_B.weight.dtype == dtype
    assert layer(torch.randn(3, 8, dtype=dtype)).dtype == dtype
