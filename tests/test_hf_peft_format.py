"""This project's LoRA on a Hugging Face Llama writes and reads PEFT's format, checked against a fixture PEFT saved.

tests/fixtures/peft_tiny_llama/ was made by real PEFT (make_peft_tiny_llama.py); nothing here needs peft.
"""

import json

import pytest
import torch

from conftest import REPO

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402

from experiment.real_model.peft_adapter import apply_peft_adapter, config_from_peft, peft_config, peft_state_dict, read_peft_adapter  # noqa: E402
from lora import apply_lora  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "peft_tiny_llama"
ADAPTERS = ["lora", "dora_rslora"]


def fixture_base():
    return transformers.LlamaForCausalLM.from_pretrained(FIXTURE / "base").eval()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_saved_keys_and_shapes_are_the_ones_peft_saves(adapter):
    settings = json.loads((FIXTURE / adapter / "adapter_config.json").read_text())
    model = fixture_base()
    apply_lora(model, config_from_peft(settings))
    ours = peft_state_dict(model)
    theirs = load_file(str(FIXTURE / adapter / "adapter_model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in ours
    for key, tensor in theirs.items():
        assert ours[key].shape == tensor.shape, key
    if "k_proj" in settings["target_modules"]:  # grouped-query attention: k_proj maps 16 -> 8, so its B is (8, r)
        assert ours["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"].shape == (8, 2)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_peft_adapters_a_and_b_in_this_projects_lora_give_peft_logits(adapter):
    expected = load_file(str(FIXTURE / "expected_logits.safetensors"))
    model = fixture_base()
    apply_peft_adapter(model, FIXTURE / adapter)
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"]).logits
        plain = fixture_base()(input_ids=expected["input_ids"]).logits
    assert (expected[adapter] - plain).abs().max() > 1e-2  # the adapter really changes the output
    torch.testing.assert_close(logits, expected[adapter], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_config_this_project_writes_agrees_with_peft_on_every_field_it_writes(adapter):
    settings, _ = read_peft_adapter(FIXTURE / adapter)
    ours = peft_config(config_from_peft(settings), base_model=settings["base_model_name_or_path"])
    for key, value in ours.items():
        if key in ("task_type", "target_modules"):
            continue  # PEFT leaves task_type None unless told; it keeps target_modules in its own order
        assert settings[key] == value, key
    assert sorted(ours["target_modules"]) == sorted(settings["target_modules"])
