"""QLoRA's 4-bit NormalFloat (NF4) weight storage (Dettmers et al., 2023, arXiv:2305.14314).

QLoRA keeps the frozen base weight in 4 bits and trains a LoRA adapter on top
of it; the weight is turned back into float32 only for the matmul. Section 3
of the paper gives the three pieces implemented here.

1. The NF4 code book ("4-bit NormalFloat Quantization"). Pretrained weights
   are roughly normal, so the 16 levels are quantiles of N(0, 1) rescaled to
   [-1, 1]: every level is then used about equally often. To have an exact 0
   (padding, zero weights) the book is asymmetric: 8 positive levels from
   quantiles on [0.5, p] and 7 negative levels from quantiles on [1 - p, 0.5],
   the two zeros merged into one: 8 + 7 + 1 = 16 = 2^4.
   Quantile 1 is +infinity, so the outermost probability p is pulled in to
       p = 1 - (1/(2*15) + 1/(2*16)) / 2 = 0.9677083...
   the mean of the centres of the last bin when [0, 1] is cut into 15 or into
   16 equal bins (the constant `offset` of bitsandbytes' `create_normal_map`).
       positive: Q(p_j), p_j = p - j (p - 0.5) / 8, j = 0..7    (8 values)
       negative: -Q(p_j), p_j = p - j (p - 0.5) / 7, j = 0..6   (7 values)
       book = sorted(negative + [0] + positive) / Q(p)          (16 values)
   Q is the standard normal quantile, torch.special.ndtri.

2. Block-wise absmax quantization. The flattened weight is cut into blocks of
   B = 64 values; each block keeps c = max |w| (float32) and each value keeps
   the index of the level nearest to w / c (4 bits, two per byte):
       code(w) = argmin_i |book[i] - w / c|,     w_hat = book[code] * c
   Small blocks stop one outlier from flattening every other value's scale.
   Per element, |w - w_hat| <= c * g / 2, g the widest gap between adjacent
   levels (0.3038, between -1 and -0.696).

3. Double quantization ("Double Quantization"). The float32 block scales c
   cost 32 / 64 = 0.5 bit per weight; quantizing them again brings this to
   8 / 64 + 32 / (64 * 256) = 0.127 bit. The paper uses 8-bit floats in
   blocks of 256 after subtracting the scales' mean (the scales are all
   positive, so centring them uses the code's sign bit). Here, a documented
   simplification: after subtracting the mean (one float32), each block of 256
   centred scales is stored as symmetric int8,
       q = round((c - mean) / s),   s = max |c - mean| over the block / 127,
   with one float32 s per block; c_hat = q s + mean, |c - c_hat| <= s / 2.
   int8 has a uniform absolute error where an 8-bit float has a uniform
   relative one; the block scales of one weight matrix lie close together,
   so the uniform grid is the finer of the two here.

Bits per weight: 4 + 32/64 = 4.5 without double quantization,
4 + 8/64 + 32/(64*256) (+ 32 bits for the mean, once) ~= 4.127 with it.
"""

import math
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from lora.errors import LoRAError

NF4_OFFSET = 1 - (1 / (2 * 15) + 1 / (2 * 16)) / 2  # 0.9677083...: see the module docstring
DQ_BLOCK_SIZE = 256  # scales per double-quantization block (paper, section 3)


@lru_cache(maxsize=1)
def _code_book_float64() -> torch.Tensor:
    normal_quantile = torch.special.ndtri  # inverse CDF of N(0, 1)
    positive_p = torch.linspace(NF4_OFFSET, 0.5, 9, dtype=torch.float64)[:-1]  # (8,): p ... just above 0.5
    negative_p = torch.linspace(NF4_OFFSET, 0.5, 8, dtype=torch.float64)[:-1]  # (7,)
    positive = normal_quantile(positive_p)  # (8,) > 0
    negative = -normal_quantile(negative_p)  # (7,) < 0
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values  # (16,)
    return values / values.abs().max()  # both ends are +-Q(p): exactly -1 and 1


def nf4_code_book() -> torch.Tensor:
    """The 16 NF4 levels, sorted, float32, from -1 to 1 with an exact 0 (a fresh copy)."""
    return _code_book_float64().to(torch.float32).clone()


def _check_block_size(numel: int, block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2 or block_size % 2:
        raise LoRAError(f"NF4 block_size must be an even integer of at least 2 (two 4-bit codes per byte), "
                        f"got {block_size!r}; the paper uses 64")
    if numel % block_size:
        divisors = [b for b in (64, 32, 16, 8, 4, 2) if numel % b == 0]
        hint = f"use a block_size that divides {numel}, e.g. {divisors[0]}" if divisors else \
            "NF4 needs an even number of weights"
        raise LoRAError(f"NF4 block_size {block_size} does not divide the weight's {numel} elements; {hint}")


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """Two codes in 0..15 per uint8, the first of each pair in the high nibble: (n,) -> (n // 2,)."""
    flat = codes.reshape(-1)  # (n,)
    if flat.numel() % 2:
        raise LoRAError(f"pack_4bit needs an even number of codes, got {flat.numel()}; pad with one more code")
    if flat.numel() and (flat.min() < 0 or flat.max() > 15):
        raise LoRAError("pack_4bit takes codes from 0 to 15 only; a 4-bit code cannot hold other values")
    pairs = flat.to(torch.uint8).reshape(-1, 2)  # (n // 2, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]  # (n // 2,)


def unpack_4bit(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_4bit: (m,) uint8 -> (2 m,) uint8 codes in 0..15."""
    flat = packed.reshape(-1)  # (m,)
    return torch.stack([flat >> 4, flat & 0x0F], dim=1).reshape(-1)  # (m, 2) -> (2 m,)


def quantize_nf4(weight: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise absmax NF4: returns (packed codes (numel // 2,) uint8, absmax (numel // block_size,) float32)."""
    _check_block_size(weight.numel(), block_size)
    blocks = weight.detach().to(torch.float32).reshape(-1, block_size)  # (n_blocks, block_size)
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    # an all-zero block has absmax 0: divide by 1 instead, every value then maps to the level 0.0
    divisor = torch.where(absmax > 0, absmax, torch.ones_like(absmax))  # (n_blocks,)
    normalized = blocks / divisor[:, None]  # (n_blocks, block_size), within [-1, 1]
    book = nf4_code_book().to(weight.device)  # (16,)
    midpoints = (book[1:] + book[:-1]) / 2  # (15,): the decision boundaries between neighbouring levels
    codes = torch.bucketize(normalized, midpoints)  # (n_blocks, block_size) int64 in 0..15: the nearest level
    return pack_4bit(codes), absmax


def dequantize_nf4(packed: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, ...], block_size: int = 64) -> torch.Tensor:
    """book[code] * absmax of its block, as a float32 tensor of `shape`."""
    codes = unpack_4bit(packed)  # (numel,)
    book = nf4_code_book().to(packed.device)  # (16,)
    values = book[codes.long()].reshape(-1, block_size)  # (n_blocks, block_size), each in [-1, 1]
    return (values * absmax.to(torch.float32)[:, None]).reshape(shape)  # (n_blocks, block_size) -> shape


def quantize_scales(absmax: torch.Tensor, block_size: int = DQ_BLOCK_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantization of the block scales: (int8 codes (n,), float32 step per block (ceil(n / block_size),), float32 mean ())."""
    n = absmax.numel()
    mean = absmax.to(torch.float32).mean()  # () : subtracted so that the int8 grid is centred on the scales
    centred = absmax.to(torch.float32) - mean  # (n,)
    padded = F.pad(centred, (0, (-n) % block_size)).reshape(-1, block_size)  # (n_dq, block_size); padding is 0
    step = padded.abs().amax(dim=1) / 127  # (n_dq,): one float32 per block of 256 scales
    divisor = torch.where(step > 0, step, torch.ones_like(step))  # (n_dq,): a block of equal scales is all 0
    q = torch.round(padded / divisor[:, None]).clamp(-127, 127).to(torch.int8)  # (n_dq, block_size)
    return q.reshape(-1)[:n], step, mean  # (n_dq * block_size,) -> (n,): padding is not stored


def dequantize_scales(q: torch.Tensor, step: torch.Tensor, mean: torch.Tensor, block_size: int = DQ_BLOCK_SIZE) -> torch.Tensor:
    """c_hat = q * step + mean, (n,) float32."""
    n = q.numel()
    padded = F.pad(q.to(torch.float32), (0, (-n) % block_size)).reshape(-1, block_size)  # (n_dq, block_size)
    return (padded * step[:, None]).reshape(-1)[:n] + mean  # (n_dq * block_size,) -> (n,)


class NF4Linear(nn.Module):
    """A frozen nn.Linear stored as NF4 codes plus (double-)quantized block scales; float32 only inside forward.

    Holds buffers only (no parameters): `codes` (out*in/2,) uint8, then either
    `absmax` (n_blocks,) float32, or with double quantization `absmax_q`
    (n_blocks,) int8, `absmax_step` (ceil(n_blocks/256),) float32 and
    `absmax_mean` () float32; and `bias` (out,) float32 or None. Build one
    with `NF4Linear.from_linear(linear)`; the constructor makes empty buffers
    of the right sizes, for load_state_dict.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, block_size: int = 64,
                 double_quant: bool = True, device=None):
        super().__init__()
        numel = in_features * out_features
        _check_block_size(numel, block_size)
        self.in_features, self.out_features = in_features, out_features
        self.block_size, self.double_quant = block_size, double_quant
        n_blocks = numel // block_size
        self.register_buffer("codes", torch.zeros(numel // 2, dtype=torch.uint8, device=device))
        if double_quant:
            n_dq = math.ceil(n_blocks / DQ_BLOCK_SIZE)
            self.register_buffer("absmax_q", torch.zeros(n_blocks, dtype=torch.int8, device=device))
            self.register_buffer("absmax_step", torch.zeros(n_dq, dtype=torch.float32, device=device))
            self.register_buffer("absmax_mean", torch.zeros((), dtype=torch.float32, device=device))
        else:
            self.register_buffer("absmax", torch.zeros(n_blocks, dtype=torch.float32, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device) if bias else None)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, block_size: int = 64, double_quant: bool = True) -> "NF4Linear":
        """Quantize `linear` (left unchanged); the result keeps no float copy of its weight."""
        weight = linear.weight  # (out, in)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, block_size, double_quant,
                    device=weight.device)
        codes, absmax = quantize_nf4(weight, block_size)
        layer.codes.copy_(codes)
        if double_quant:
            q, step, mean = quantize_scales(absmax)
            layer.absmax_q.copy_(q)
            layer.absmax_step.copy_(step)
            layer.absmax_mean.copy_(mean)
        else:
            layer.absmax.copy_(absmax)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().to(torch.float32))
        return layer

    def block_scales(self) -> torch.Tensor:
        """The absmax of every block as used for dequantizing, (n_blocks,) float32."""
        if self.double_quant:
            return dequantize_scales(self.absmax_q, self.absmax_step, self.absmax_mean)
        return self.absmax

    def dequantized_weight(self) -> torch.Tensor:
        """The weight rebuilt from the codes, (out_features, in_features) float32: a new tensor every call."""
        return dequantize_nf4(self.codes, self.block_scales(), (self.out_features, self.in_features), self.block_size)

    @property
    def weight(self) -> torch.Tensor:
        # Read-only: LoRALinear reads base.weight's device and dtype, DoRA its row norms. A copy, never storage.
        return self.dequantized_weight()

    @weight.setter
    def weight(self, value) -> None:
        # LoRALinear.merge() writes base.weight; a 4-bit weight cannot absorb a float update in place
        raise LoRAError("an NF4Linear weight is read-only 4-bit storage; merge a QLoRA layer with "
                        "lora.nf4.merge_qlora(layer), which returns a float32 nn.Linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def storage_bytes(self) -> int:
        """Bytes of the tensors this layer actually holds (codes, scales, bias)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def bits_per_parameter(self) -> float:
        """Bits held for the weight (codes and scales, not the bias) per weight element."""
        bias_bytes = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return 8 * (self.storage_bytes() - bias_bytes) / (self.in_features * self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"block_size={self.block_size}, double_quant={self.double_quant}")


@torch.no_grad()
def dequantize_to_linear(layer: NF4Linear) -> nn.Linear:
    """A plain float32 nn.Linear holding the dequantized weight and the bias of `layer`."""
    if not isinstance(layer, NF4Linear):
        raise LoRAError(f"dequantize_to_linear takes an NF4Linear, got {type(layer).__name__}")
    linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                       device=layer.codes.device, dtype=torch.float32)
    linear.weight.copy_(layer.dequantized_weight())
    if layer.bias is not None:
        linear.bias.copy_(layer.bias)
    return linear


@torch.no_grad()
def merge_qlora(layer: nn.Module) -> nn.Linear:
    """Merge a LoRALinear (or DoRALinear) whose base is an NF4Linear: a float32 nn.Linear with W_hat + delta.

    The sum is kept in float32: re-quantizing it to NF4 would throw most of the
    small update away again. `layer` itself is left unchanged.
    """
    base = getattr(layer, "base", None)
    if not isinstance(base, NF4Linear) or not hasattr(layer, "delta_weight"):
        raise LoRAError(f"merge_qlora takes a LoRA layer wrapping an NF4Linear, got {type(layer).__name__}; "
                        "for a plain LoRALinear use its merge()")
    linear = dequantize_to_linear(base)
    linear.weight += layer.delta_weight()  # (out, in); for DoRA, delta_weight() is the merged weight minus W_hat
    return linear
