"""`lora` adapts any nn.Module, not only MiniGPT: apply, train a step, merge, save and load."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lora import (LoRAConfig, LoRAError, LoRALinear, apply_lora, load_lora_state_dict, load_lora_weights, lora_layers,
                  merge_lora, save_lora_weights)


class ToyAttention(nn.Module):
    """A single-head self-attention block with PEFT-style projection names, and nothing of MiniGPT."""

    def __init__(self, width: int = 12):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.o_proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):  # x: (B, T, C)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, T, C)
        return self.norm(x + self.o_proj(attended))


def sequential():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 6))


def toy_attention():
    torch.manual_seed(0)
    return ToyAttention()


MODELS = [  # (builder, targets, input shape)
    (sequential, ["0", "2"], (8, 10)),
    (toy_attention, ["q_proj", "v_proj", "o_proj"], (2, 5, 12)),
]


def train_one_step(model, x):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("build, targets, shape", MODELS)
def test_apply_train_merge_save_and_load_on_a_model_that_is_not_minigpt(build, targets, shape, tmp_path):
    model = build()
    frozen = {name: p.detach().clone() for name, p in model.named_parameters()}
    torch.manual_seed(1)
    x = torch.randn(shape)
    reference = model(x).detach()

    wrapped = apply_lora(model, LoRAConfig(r=2, lora_alpha=4, target_modules=targets))
    assert len(wrapped) == len(targets)
    assert torch.equal(model(x), reference)  # B = 0: the adapted model starts equal to the original
    train_one_step(model, x)
    adapted = model(x).detach()
    assert (adapted - reference).abs().max() > 1e-4  # the step really changed the output

    base_now = {name.replace(".base", ""): p for name, p in model.named_parameters() if "lora_" not in name}
    assert all(torch.equal(base_now[name], value) for name, value in frozen.items())  # base untouched

    merged = merge_lora(model)
    assert not lora_layers(merged)
    assert set(merged.state_dict()) == set(build().state_dict())  # the original architecture's keys
    torch.testing.assert_close(merged(x), adapted, rtol=0, atol=1e-5)

    save_lora_weights(model, tmp_path / "lora.pt")
    fresh = build()
    apply_lora(fresh, LoRAConfig(r=2, lora_alpha=4, target_modules=targets))
    load_lora_state_dict(fresh, load_lora_weights(tmp_path / "lora.pt"))
    assert torch.equal(fresh(x), model(x))


def test_an_adapter_for_other_targets_does_not_load_silently(tmp_path):
    model = toy_attention()
    apply_lora(model, LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    save_lora_weights(model, tmp_path / "lora.pt")
    other = toy_attention()
    apply_lora(other, LoRAConfig(r=2, lora_alpha=4, target_modules=["v_proj"]))
    with pytest.raises(LoRAError, match="missing key"):
        load_lora_state_dict(other, load_lora_weights(tmp_path / "lora.pt"))


@pytest.mark.parametrize("content, fragment", [(b"\x00garbage", "corrupted"), (None, "weights_only")])
def test_bad_lora_weight_files_raise_lora_errors(tmp_path, content, fragment):
    path = tmp_path / "lora.pt"
    if content is None:
        torch.save({"x": torch.zeros(1), "f": print}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(LoRAError, match=fragment):
        load_lora_weights(path)


def test_lora_errors_are_value_errors():
    with pytest.raises(ValueError):
        apply_lora(sequential(), LoRAConfig(target_modules=["nothing"]))


def test_merge_lora_does_not_touch_the_model_it_is_given():
    model = toy_attention()
    apply_lora(model, LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    with torch.no_grad():
        model.q_proj.lora_B.weight.normal_()
    snapshot = copy.deepcopy(model.state_dict())
    merge_lora(model)
    assert isinstance(model.q_proj, LoRALinear) and not model.q_proj.merged
    assert all(torch.equal(snapshot[k], v) for k, v in model.state_dict().items())
