"""NF4 storage (QLoRA, Dettmers et al. 2023, section 3): code book, block quantization, double quantization, NF4Linear."""

import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from lora.errors import LoRAError  # noqa: E402
from lora.layer import LoRALinear  # noqa: E402
from lora.nf4 import (NF4_OFFSET, NF4Linear, dequantize_nf4, dequantize_scales, dequantize_to_linear,  # noqa: E402
                      merge_qlora, nf4_code_book, pack_4bit, quantize_nf4, quantize_scales, unpack_4bit)

# The published NF4 levels (the QLoRA paper's appendix; bitsandbytes' NF4 lookup table), typed in by hand.
PUBLISHED_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
]
BOOK = nf4_code_book()
MAX_HALF_GAP = float((BOOK[1:] - BOOK[:-1]).max()) / 2  # the widest rounding error, as a fraction of absmax


def gaussian_linear(out_features=64, in_features=128, seed=0, std=0.02) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.weight.normal_(0.0, std)  # pretrained weights are roughly normal: what NF4 is built for
    return linear


def test_code_book_follows_the_papers_construction_and_matches_the_published_table():
    assert BOOK.dtype == torch.float32 and BOOK.shape == (16,)
    assert torch.all(BOOK[1:] > BOOK[:-1])  # sorted, no repeated level
    for level in (-1.0, 0.0, 1.0):
        assert (BOOK == level).sum() == 1  # exact -1, 0 and 1
    assert (BOOK > 0).sum() == 8 and (BOOK < 0).sum() == 7  # the asymmetric 8 + 7 + zero
    assert NF4_OFFSET == pytest.approx(0.9677083, abs=1e-7)  # bitsandbytes' create_normal_map offset
    assert torch.allclose(BOOK, torch.tensor(PUBLISHED_NF4), rtol=0, atol=1e-6)


def test_pack_and_unpack_round_trip_all_sixteen_codes():
    codes = torch.arange(16, dtype=torch.uint8)
    packed = pack_4bit(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (8,)
    assert packed[0].item() == 0x01 and packed[7].item() == 0xEF  # first code of a pair in the high nibble
    assert torch.equal(unpack_4bit(packed), codes)
    every_pair = torch.cartesian_prod(torch.arange(16), torch.arange(16)).reshape(-1).to(torch.uint8)  # (512,)
    assert torch.equal(unpack_4bit(pack_4bit(every_pair)), every_pair)
    with pytest.raises(LoRAError, match="even number"):
        pack_4bit(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(LoRAError, match="0 to 15"):
        pack_4bit(torch.tensor([3, 16], dtype=torch.uint8))


def test_a_code_book_value_times_the_block_absmax_quantizes_exactly():
    torch.manual_seed(1)
    n_blocks, block = 6, 64
    codes = torch.randint(0, 16, (n_blocks, block))
    codes[:, 0] = 15  # level 1.0 in every block, so the block's absmax is exactly its scale
    scales = torch.rand(n_blocks) + 0.1
    weight = (BOOK[codes] * scales[:, None]).reshape(8, 48)  # (6, 64) -> (8, 48)
    packed, absmax = quantize_nf4(weight, block_size=block)
    assert torch.equal(absmax, scales)
    assert torch.equal(unpack_4bit(packed).long(), codes.reshape(-1))
    assert torch.equal(dequantize_nf4(packed, absmax, weight.shape, block), weight)  # bit-exact


def test_every_value_goes_to_its_nearest_level_and_the_error_is_within_half_the_widest_gap():
    torch.manual_seed(2)
    weight = torch.randn(32, 64)
    packed, absmax = quantize_nf4(weight, block_size=64)
    normalized = weight.reshape(-1, 64) / absmax[:, None]  # (32, 64)
    nearest = (normalized[..., None] - BOOK).abs().argmin(dim=-1)  # brute force over the 16 levels
    assert torch.equal(unpack_4bit(packed).long(), nearest.reshape(-1))
    error = (dequantize_nf4(packed, absmax, weight.shape) - weight).abs().reshape(-1, 64)  # (32, 64)
    assert torch.all(error <= MAX_HALF_GAP * absmax[:, None] * (1 + 1e-6))  # |w - w_hat| <= c g / 2


def test_an_all_zero_block_stays_zero():
    weight = torch.zeros(2, 64)
    weight[1] = torch.randn(64)
    packed, absmax = quantize_nf4(weight)
    assert torch.equal(dequantize_nf4(packed, absmax, weight.shape)[0], torch.zeros(64))


def test_double_quantization_error_is_within_half_an_int8_step():
    # Derived bound: q = round((c - mean) / s) with s = max|c - mean| / 127 per block of 256, so |c - c_hat| <= s / 2.
    torch.manual_seed(3)
    absmax = torch.rand(1000) * 0.05 + 0.01  # 1000 scales: 3 full blocks of 256 and one of 232
    q, step, mean = quantize_scales(absmax)
    assert q.dtype == torch.int8 and q.shape == (1000,) and step.shape == (4,) and mean.shape == ()
    restored = dequantize_scales(q, step, mean)
    error = (restored - absmax).abs()
    bound = torch.repeat_interleave(step, 256)[:1000] / 2 + 1e-7  # + float32 rounding of the arithmetic
    assert torch.all(error <= bound)
    assert 0 < error.max() < 0.05 / 254 + 1e-7  # lossy, but never more than half of (range / 127)


def test_double_quantized_scales_of_a_real_layer_are_within_half_a_percent():
    linear = gaussian_linear(256, 256)
    _, absmax = quantize_nf4(linear.weight)
    restored = NF4Linear.from_linear(linear, double_quant=True).block_scales()
    relative = ((restored - absmax).abs() / absmax).max().item()
    assert relative < 0.005  # measured ~0.2 %: the 1024 scales of one matrix lie close together


def test_nf4_linear_output_is_within_the_derived_bound_of_the_float_layer():
    linear = gaussian_linear()
    x = torch.randn(16, 128)
    expected = linear(x)
    for double_quant in (False, True):
        layer = NF4Linear.from_linear(linear, double_quant=double_quant)
        _, absmax = quantize_nf4(linear.weight)
        used = layer.block_scales()
        # |w - book[code] c_hat| <= c g/2 + |c - c_hat|, per element, block by block
        element_bound = (MAX_HALF_GAP * absmax + (absmax - used).abs()).repeat_interleave(64).reshape(64, 128)
        # so |y_i - y_hat_i| <= sum_j bound_ij |x_j|
        output_bound = x.abs() @ element_bound.T  # (16, 64)
        got = layer(x)
        assert torch.all((got - expected).abs() <= output_bound * (1 + 1e-5) + 1e-6)
        relative = ((got - expected).norm() / expected.norm()).item()
        assert relative < 0.15  # measured ~0.09 for normal weights, blocks of 64


def test_storage_is_codes_scales_and_bias_only_and_matches_the_formula():
    linear = gaussian_linear(64, 128)
    n, out, blocks = 64 * 128, 64, 64 * 128 // 64
    plain = NF4Linear.from_linear(linear, double_quant=False)
    assert list(plain.parameters()) == []  # nothing trainable, nothing float-sized kept
    assert {name: b.dtype for name, b in plain.named_buffers()} == {
        "codes": torch.uint8, "absmax": torch.float32, "bias": torch.float32}
    assert plain.storage_bytes() == n // 2 + 4 * blocks + 4 * out
    nested = NF4Linear.from_linear(linear, double_quant=True)
    assert {name: b.dtype for name, b in nested.named_buffers()} == {
        "codes": torch.uint8, "absmax_q": torch.int8, "absmax_step": torch.float32,
        "absmax_mean": torch.float32, "bias": torch.float32}
    assert nested.storage_bytes() == n // 2 + blocks + 4 * math.ceil(blocks / 256) + 4 + 4 * out
    float_bytes = 4 * (n + out)  # the float32 nn.Linear
    assert nested.storage_bytes() < plain.storage_bytes() < float_bytes / 6  # 6.8x smaller here


def test_bits_per_parameter_are_the_papers_4_5_and_4_127_for_a_weight_with_many_blocks():
    linear = nn.Linear(512, 512)  # 4096 blocks of 64, 16 blocks of 256 scales
    assert NF4Linear.from_linear(linear, double_quant=False).bits_per_parameter() == 4.5  # 4 + 32/64
    paper = 4 + 8 / 64 + 32 / (64 * 256)  # 4.127
    assert NF4Linear.from_linear(linear, double_quant=True).bits_per_parameter() == pytest.approx(paper, abs=2e-4)


@pytest.mark.parametrize("block_size", [48, 7, 0, -64, 64.0, True])
def test_a_block_size_that_cannot_work_is_a_lora_error(block_size):
    with pytest.raises(LoRAError, match="block_size"):
        NF4Linear.from_linear(nn.Linear(10, 10), block_size=block_size)  # 100 weights


def test_the_message_names_a_block_size_that_fits():
    with pytest.raises(LoRAError, match="does not divide the weight's 100 elements; use a block_size that divides 100, e.g. 4"):
        quantize_nf4(torch.randn(10, 10), block_size=64)


def test_a_state_dict_loads_into_a_fresh_nf4_linear():
    source = NF4Linear.from_linear(gaussian_linear())
    fresh = NF4Linear(128, 64, bias=True, block_size=64, double_quant=True)
    fresh.load_state_dict(source.state_dict())
    x = torch.randn(3, 128)
    assert torch.equal(fresh(x), source(x))


def test_dequantize_to_linear_gives_the_same_outputs_as_a_plain_float_layer():
    layer = NF4Linear.from_linear(gaussian_linear())
    linear = dequantize_to_linear(layer)
    assert type(linear) is nn.Linear and linear.weight.dtype == torch.float32
    x = torch.randn(3, 128)
    assert torch.allclose(linear(x), layer(x), atol=1e-6)


def test_lora_on_an_nf4_base_trains_without_touching_the_codes_and_merges_to_float():
    torch.manual_seed(4)
    base = NF4Linear.from_linear(gaussian_linear())
    frozen = {name: b.clone() for name, b in base.named_buffers()}
    layer = LoRALinear(base, r=4, lora_alpha=8)
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["lora_A.weight", "lora_B.weight"]
    optimizer = torch.optim.AdamW([p for p in layer.parameters() if p.requires_grad], lr=1e-2)
    x, target = torch.randn(8, 128), torch.randn(8, 64)
    loss = ((layer(x) - target) ** 2).mean()
    loss.backward()
    optimizer.step()
    assert layer.lora_B.weight.abs().sum() > 0  # it trained
    for name, before in frozen.items():
        assert torch.equal(getattr(base, name), before), name  # bit-identical 4-bit storage

    layer.eval()
    with pytest.raises(LoRAError, match="merge_qlora"):
        layer.merge()  # LoRALinear.merge writes base.weight: refused, not silently lost
    assert not layer.merged
    merged = merge_qlora(layer)
    assert type(merged) is nn.Linear
    assert torch.allclose(merged(x), layer(x), atol=1e-5)


def reference_nf4(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """An independent block-wise absmax NF4 round trip in float64, written for this test from the paper's section 3:
    every block of `block_size` consecutive weights (row-major) is divided by its own max |w|, each value goes to the
    nearest published level, and is scaled back. No code of lora/nf4.py is used."""
    levels = torch.tensor(PUBLISHED_NF4, dtype=torch.float64)
    flat = weight.detach().double().reshape(-1)
    out = torch.empty_like(flat)
    for start in range(0, flat.numel(), block_size):
        block = flat[start:start + block_size]
        absmax = block.abs().max()
        normalized = block / absmax if absmax > 0 else block
        nearest = (normalized[:, None] - levels[None, :]).abs().argmin(dim=1)
        out[start:start + block_size] = levels[nearest] * absmax
    return out.reshape(weight.shape)


@pytest.mark.parametrize("block_size", [2, 8, 16, 64, 256])
def test_nf4_at_each_block_size_matches_an_independent_reference(block_size):
    torch.manual_seed(block_size)
    linear = nn.Linear(48, 32)
    with torch.no_grad():  # magnitudes that differ from weight to weight: every block gets its own absmax
        linear.weight.copy_(torch.randn(32, 48) * torch.exp(2 * torch.randn(32, 48)))
    layer = NF4Linear.from_linear(linear, block_size=block_size, double_quant=False)
    expected = reference_nf4(linear.weight, block_size)
    got = layer.dequantized_weight().double()
    # float32 level values and scales against float64: equal up to float32 rounding of the product
    assert torch.allclose(got, expected, rtol=1e-6, atol=0), f"block size {block_size}"
    other = reference_nf4(linear.weight, 2 * block_size if block_size < 256 else block_size // 2)
    assert not torch.allclose(got, other, rtol=1e-6, atol=0)  # the block size matters for this weight
