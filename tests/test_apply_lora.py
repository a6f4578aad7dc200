import pytest
import torch

from conftest import tiny_model
from lora import LoRAConfig, LoRALinear, apply_lora, load_lora_state_dict, lora_state_dict
from lora.parameters import count_parameters, parameter_breakdown
from lora import LoRAError
from experiment.training.methods import prepare_lora
from minigpt.training import TrainConfig, train

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def test_apply_lora_wraps_exactly_the_targeted_projections():
    model = tiny_model()
    wrapped = apply_lora(model, LoRAConfig(r=2, lora_alpha=4))
    expected = {f"blocks.{i}.attention.{t}" for i in range(2) for t in TARGETS}
    assert set(wrapped) == expected
    assert {n for n, m in model.named_modules() if isinstance(m, LoRALinear)} == expected


def test_right_after_apply_lora_outputs_equal_the_base_model_exactly():
    model = tiny_model()
    idx = torch.randint(50, (2, 12))
    before, _ = model(idx)
    apply_lora(model, LoRAConfig(r=4, lora_alpha=8))
    after, _ = model(idx)
    assert torch.equal(before, after)


def test_only_a_and_b_require_grad_after_apply_lora():
    model = tiny_model()
    apply_lora(model, LoRAConfig(r=2, lora_alpha=4, target_modules=["v_proj"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_an_unknown_target_lists_the_linear_layers():
    with pytest.raises(LoRAError, match=r"'qkv' matches no nn.Linear.*down_proj.*o_proj.*q_proj"):
        apply_lora(tiny_model(), LoRAConfig(target_modules=["qkv"]))


def test_the_tied_output_head_cannot_be_a_target():
    with pytest.raises(LoRAError, match="weight tying"):
        apply_lora(tiny_model(), LoRAConfig(target_modules=["lm_head"]))


@pytest.mark.parametrize("rank", [0, -1, 17])
def test_rank_out_of_range_is_an_error(rank):
    with pytest.raises(LoRAError, match="rank"):
        apply_lora(tiny_model(), LoRAConfig(r=rank, lora_alpha=1.0))  # the tiny model is 16 wide


@pytest.mark.parametrize("alpha", [0.0, -2.0])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(LoRAError, match="lora_alpha must be greater than 0"):
        apply_lora(tiny_model(), LoRAConfig(r=2, lora_alpha=alpha))


def test_training_changes_a_and_b_and_leaves_base_weights_bit_identical():
    model = tiny_model(vocab_size=10)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapped = apply_lora(model, LoRAConfig(r=2, lora_alpha=4, lora_dropout=0.0))
    a_before = {n: l.lora_A.weight.detach().clone() for n, l in wrapped.items()}
    data = torch.arange(10).repeat(40)
    train(model, data, data, TrainConfig(steps=5, batch_size=4, lr=1e-2, warmup_steps=1, eval_interval=5, eval_batches=1),
          "cpu", show_progress=False)
    for name, parameter in model.named_parameters():
        if "lora_" not in name:
            original = name.replace(".base.", ".")
            assert torch.equal(parameter, base_before[original]), name
    for name, layer in wrapped.items():
        assert not torch.equal(layer.lora_A.weight, a_before[name])
        assert torch.count_nonzero(layer.lora_B.weight) > 0


def test_trainable_count_is_r_times_in_plus_out_per_layer_plus_new_rows():
    model = tiny_model(vocab_size=50)
    model.resize_token_embeddings(57)
    wrapped = prepare_lora(model, 50, LoRAConfig(r=3, lora_alpha=6))
    expected = sum(3 * (layer.in_features + layer.out_features) for layer in wrapped.values()) + 7 * 16
    counts = count_parameters(model)
    assert counts["trainable"] == expected == 8 * 3 * 32 + 7 * 16
    breakdown = {row["module"]: row for row in parameter_breakdown(model)}
    assert breakdown["token_embedding"]["trainable"] == 7 * 16
    assert breakdown["blocks.0.attention.q_proj.lora_A"]["trainable"] == 3 * 16
    assert sum(row["total"] for row in breakdown.values()) == counts["total"]


def test_lora_state_dict_holds_exactly_the_a_and_b_tensors():
    model = tiny_model()
    apply_lora(model, LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    expected = {f"blocks.{i}.attention.{t}.lora_{m}.weight" for i in range(2) for t in ("q_proj", "v_proj") for m in "AB"}
    assert set(lora_state_dict(model)) == expected


def test_loading_lora_tensors_requires_the_exact_key_set_and_shapes():
    source, target = tiny_model(), tiny_model()
    for model in (source, target):
        apply_lora(model, LoRAConfig(r=2, lora_alpha=4))
    state = lora_state_dict(source)
    load_lora_state_dict(target, state)
    assert all(torch.equal(state[k], v) for k, v in lora_state_dict(target).items())
    with pytest.raises(LoRAError, match="1 missing key"):
        load_lora_state_dict(target, {k: v for k, v in list(state.items())[1:]})
    with pytest.raises(LoRAError, match="1 unexpected key"):
        load_lora_state_dict(target, {**state, "blocks.9.attention.q_proj.lora_A.weight": torch.zeros(2, 16)})
    wrong_shape = {**state, "blocks.0.attention.q_proj.lora_A.weight": torch.zeros(3, 16)}
    with pytest.raises(LoRAError, match="shape"):
        load_lora_state_dict(target, wrong_shape)


def test_the_per_matrix_savings_are_r_times_in_plus_out_against_in_times_out():
    from lora import lora_matrix_savings
    assert lora_matrix_savings(64, 256, 4) == {"full": 16_384, "lora": 1_280, "ratio": 1_280 / 16_384}
    assert lora_matrix_savings(64, 64, 64)["ratio"] == 2.0  # at full rank LoRA costs twice a full update
