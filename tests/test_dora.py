"""DoRA (Liu et al. 2024): W' = m (W + s B A) / ||W + s B A|| per output feature, the norm detached."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lora.dora import DoRALinear  # noqa: E402
from lora.errors import LoRAError  # noqa: E402
from lora.nf4 import NF4Linear, merge_qlora  # noqa: E402

IN, OUT = 12, 10


def dora_layer(seed=0, dropout=0.0, bias=True, randomise=True) -> DoRALinear:
    torch.manual_seed(seed)
    layer = DoRALinear(nn.Linear(IN, OUT, bias=bias), r=4, lora_alpha=8, lora_dropout=dropout)
    if randomise:
        with torch.no_grad():
            layer.lora_B.weight.normal_(0.0, 0.3)  # B starts at zero; make the direction change
            layer.lora_magnitude.mul_(torch.rand(OUT) + 0.5)  # and the magnitude
    return layer


def reference_weight(layer: DoRALinear) -> torch.Tensor:
    """The paper's Eq. 5 written out independently of the layer's code, (out, in)."""
    W = layer.base.weight.detach()  # (out, in)
    V = W + layer.scaling * layer.lora_B.weight.detach() @ layer.lora_A.weight.detach()  # (out, in)
    norms = torch.sqrt((V ** 2).sum(dim=1))  # (out,): one per output feature, i.e. per row
    return layer.lora_magnitude.detach()[:, None] * V / norms[:, None]  # (out, in)


def reference_output(layer: DoRALinear, x: torch.Tensor) -> torch.Tensor:
    bias = layer.base.bias.detach() if layer.base.bias is not None else None
    return F.linear(x, reference_weight(layer), bias)  # the bias added once, unscaled


def test_magnitude_is_one_trainable_entry_per_output_feature_starting_at_the_row_norms():
    layer = dora_layer(randomise=False)
    assert layer.lora_magnitude.shape == (OUT,)
    assert torch.allclose(layer.lora_magnitude, layer.base.weight.norm(dim=1))
    trainable = sorted(name for name, p in layer.named_parameters() if p.requires_grad)
    assert trainable == ["lora_A.weight", "lora_B.weight", "lora_magnitude"]


def test_the_layer_starts_equal_to_its_base():
    layer = dora_layer(randomise=False)
    x = torch.randn(5, IN)
    assert torch.allclose(layer(x), layer.base(x), rtol=0, atol=1e-6)
    assert torch.equal(layer(x), layer.base(x))  # in fact exactly: m / n is exactly 1, the update exactly 0


@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_the_formula_with_the_bias_left_unscaled(bias):
    layer = dora_layer(bias=bias).eval()
    x = torch.randn(7, IN)
    assert torch.allclose(layer(x), reference_output(layer, x), atol=1e-5)
    if bias:  # the bias enters once, not multiplied by m / n along with the weight
        scale = layer.lora_magnitude / layer.weight_norm()  # (out,)
        bias_scaled_too = reference_output(layer, x) + (scale - 1) * layer.base.bias
        assert not torch.allclose(layer(x), bias_scaled_too, atol=1e-3)


def test_with_dropout_the_frozen_path_sees_the_clean_input_as_in_peft():
    layer = dora_layer(dropout=0.5).train()
    x = torch.randn(6, IN)
    torch.manual_seed(7)
    got = layer(x)
    torch.manual_seed(7)
    dropped = F.dropout(x, 0.5, training=True)  # the same mask
    W, b = layer.base.weight, layer.base.bias
    V = W + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
    scale = layer.lora_magnitude / V.norm(dim=1)
    expected = F.linear(x, W, b) + (scale - 1) * F.linear(dropped, W) + scale * F.linear(dropped, V - W)
    assert torch.allclose(got, expected, atol=1e-5)
    layer.eval()  # no dropout: back to exactly Eq. 5
    assert torch.allclose(layer(x), reference_output(layer, x), atol=1e-5)


def test_the_norm_gets_no_gradient():
    layer = dora_layer()
    x, target = torch.randn(9, IN), torch.randn(9, OUT)
    ((layer(x) - target) ** 2).sum().backward()
    got = [layer.lora_magnitude.grad, layer.lora_A.weight.grad, layer.lora_B.weight.grad]

    def independent_grads(detach_norm: bool):
        m = layer.lora_magnitude.detach().clone().requires_grad_(True)
        A = layer.lora_A.weight.detach().clone().requires_grad_(True)
        B = layer.lora_B.weight.detach().clone().requires_grad_(True)
        V = layer.base.weight.detach() + layer.scaling * B @ A
        norms = torch.linalg.vector_norm(V, dim=1)
        if detach_norm:
            norms = norms.detach()
        y = F.linear(x, m[:, None] * V / norms[:, None], layer.base.bias.detach())
        ((y - target) ** 2).sum().backward()
        return [m.grad, A.grad, B.grad]

    detached = independent_grads(detach_norm=True)
    for mine, ref in zip(got, detached):
        assert torch.allclose(mine, ref, atol=1e-5, rtol=1e-4)
    through_norm = independent_grads(detach_norm=False)
    assert torch.allclose(got[0], through_norm[0], atol=1e-5)  # m's gradient never involves the norm
    for mine, ref in zip(got[1:], through_norm[1:]):
        assert not torch.allclose(mine, ref, atol=1e-3)  # A's and B's would, had the norm not been detached


def test_merge_gives_the_same_outputs_and_unmerge_restores_w():
    layer = dora_layer()
    optimizer = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(8, IN)
    (layer(x) ** 2).mean().backward()
    optimizer.step()  # one real step on top of the random B and m
    layer.eval()
    original = layer.base.weight.detach().clone()
    with torch.no_grad():
        before = layer(x)
        delta = layer.delta_weight()
        expected_weight = reference_weight(layer)
    assert torch.allclose(original + delta, layer.merged_weight(), atol=1e-6)  # delta_weight = W' - W

    layer.merge()
    layer.merge()  # idempotent
    assert layer.merged
    assert torch.allclose(layer.base.weight, expected_weight, atol=1e-5)  # W <- m V / ||V||
    with torch.no_grad():
        assert torch.allclose(layer(x), before, atol=1e-5)
    with pytest.raises(LoRAError, match="unmerge"):
        layer.delta_weight()

    layer.unmerge()
    layer.unmerge()
    assert not layer.merged
    assert torch.allclose(layer.base.weight, original, rtol=0, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(layer(x), before, atol=1e-5)


def test_dora_on_an_nf4_base_starts_equal_and_merges_to_float():
    torch.manual_seed(3)
    base = NF4Linear.from_linear(nn.Linear(64, 32))
    layer = DoRALinear(base, r=4, lora_alpha=8)
    x = torch.randn(4, 64)
    assert torch.allclose(layer(x), base(x), atol=1e-6)
    with torch.no_grad():
        layer.lora_B.weight.normal_(0.0, 0.1)
    assert torch.allclose(merge_qlora(layer)(x), layer(x), atol=1e-5)
