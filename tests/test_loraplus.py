"""LoRA+ (Hayou et al. 2024): B learns loraplus_lr_ratio times faster than A; the rest of AdamW unchanged."""

import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from lora.dora import DoRALinear  # noqa: E402
from lora.errors import LoRAError  # noqa: E402
from lora.layer import LoRALinear  # noqa: E402
from lora.loraplus import loraplus_parameter_groups  # noqa: E402


class Tiny(nn.Module):
    """An embedding with trainable rows, one LoRA layer, one DoRA layer, a trainable norm."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 8)
        self.q_proj = LoRALinear(nn.Linear(8, 8), r=2, lora_alpha=4)
        self.v_proj = DoRALinear(nn.Linear(8, 8), r=2, lora_alpha=4)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 20)
        self.head.requires_grad_(False)  # frozen: must appear in no group

    def forward(self, ids):
        h = self.embed(ids)
        return self.head(self.norm(self.q_proj(h) + self.v_proj(h)))


def optimizer_for(model, lr=1e-3, ratio=16.0, weight_decay=0.1):
    return torch.optim.AdamW(loraplus_parameter_groups(model, lr, ratio, weight_decay), lr=lr, betas=(0.9, 0.95))


def test_groups_and_learning_rates_read_back_from_a_real_adamw():
    model = Tiny()
    optimizer = optimizer_for(model)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"lora_A", "lora_B", "decay", "no_decay"}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["lora_A"] == {id(model.q_proj.lora_A.weight), id(model.v_proj.lora_A.weight)}
    assert ids["lora_B"] == {id(model.q_proj.lora_B.weight), id(model.v_proj.lora_B.weight)}
    assert ids["decay"] == {id(model.embed.weight)}  # embedding rows: lr, not the B rate
    assert ids["no_decay"] == {id(model.v_proj.lora_magnitude), id(model.norm.weight), id(model.norm.bias)}
    assert groups["lora_A"]["lr"] == 1e-3 and groups["decay"]["lr"] == 1e-3 and groups["no_decay"]["lr"] == 1e-3
    assert groups["lora_B"]["lr"] == pytest.approx(16e-3)
    assert groups["lora_A"]["weight_decay"] == groups["lora_B"]["weight_decay"] == groups["decay"]["weight_decay"] == 0.1
    assert groups["no_decay"]["weight_decay"] == 0.0
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set().union(*ids.values()) == trainable  # every trainable tensor exactly once, nothing frozen
    assert sum(len(g["params"]) for g in groups.values()) == len(trainable)


def test_empty_groups_are_left_out():
    layer = LoRALinear(nn.Linear(4, 4, bias=False), r=1, lora_alpha=1)
    names = [g["name"] for g in loraplus_parameter_groups(layer, lr=1e-3, loraplus_lr_ratio=4.0)]
    assert names == ["lora_A", "lora_B"]


def test_after_one_adamw_step_b_has_moved_ratio_times_as_far_as_a():
    # Adam's first step moves each element by lr * g / (|g| + eps): about lr whatever the gradient's size.
    model = Tiny()
    ratio, lr = 8.0, 1e-3
    optimizer = optimizer_for(model, lr=lr, ratio=ratio, weight_decay=0.0)
    A, B = model.q_proj.lora_A.weight, model.q_proj.lora_B.weight
    before_A, before_B = A.detach().clone(), B.detach().clone()
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)  # the same gradient everywhere
    optimizer.step()
    moved_A = (A - before_A).abs()
    moved_B = (B - before_B).abs()
    assert torch.allclose(moved_A, torch.full_like(moved_A, lr), rtol=1e-4)
    assert torch.allclose(moved_B, torch.full_like(moved_B, lr * ratio), rtol=1e-4)
    assert (moved_B.mean() / moved_A.mean()).item() == pytest.approx(ratio, rel=1e-4)


def test_weight_decay_shrinks_matrices_but_not_vectors():
    model = Tiny()
    optimizer = optimizer_for(model, lr=0.1, weight_decay=0.5)
    before_A, before_norm = model.q_proj.lora_A.weight.detach().clone(), model.norm.weight.detach().clone()
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)  # no gradient: only decoupled weight decay can move anything
    optimizer.step()
    assert torch.allclose(model.q_proj.lora_A.weight, before_A * (1 - 0.1 * 0.5))
    assert torch.equal(model.norm.weight, before_norm)


@pytest.mark.parametrize("ratio", [0, -2.0, math.inf, math.nan, "16", True])
def test_a_ratio_that_is_not_a_positive_finite_number_is_a_lora_error(ratio):
    with pytest.raises(LoRAError, match="loraplus_lr_ratio"):
        loraplus_parameter_groups(Tiny(), lr=1e-3, loraplus_lr_ratio=ratio)


def test_bad_lr_weight_decay_and_a_frozen_model_are_lora_errors():
    with pytest.raises(LoRAError, match="lr must"):
        loraplus_parameter_groups(Tiny(), lr=0.0, loraplus_lr_ratio=16)
    with pytest.raises(LoRAError, match="weight_decay"):
        loraplus_parameter_groups(Tiny(), lr=1e-3, loraplus_lr_ratio=16, weight_decay=-1.0)
    with pytest.raises(LoRAError, match="no trainable parameters"):
        loraplus_parameter_groups(nn.Linear(3, 3).requires_grad_(False), lr=1e-3, loraplus_lr_ratio=16)
