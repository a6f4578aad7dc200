"""The PEFT file format checked against an adapter saved by real PEFT (tests/fixtures/peft_rslora/), without peft installed.

The fixture was written by tests/fixtures/make_peft_fixture.py with peft's own
get_peft_model and save_pretrained: rsLoRA, r=2, lora_alpha=4 on q_proj and
v_proj of a tiny MiniGPT. Comparing with it catches, where the peft-only test
is skipped, an export that writes other key names, transposes A and B, or
drops use_rslora, and an import whose model computes something else.
"""

import json
from pathlib import Path

import torch

from conftest import tiny_model
from experiment.serving.peft_format import PEFT_BIN, PEFT_CONFIG, PREFIX, export_peft, peft_config
from lora import LoRAConfig, apply_lora, load_lora_state_dict
from minigpt.checkpoint import save_model_dir
from test_adapter_server import BASE_WORDS, make_adapter
from minigpt.tokenizer import WordTokenizer

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "peft_rslora"
CONFIG = LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], use_rslora=True)


def peft_tensors() -> dict:
    return torch.load(FIXTURE / PEFT_BIN, map_location="cpu", weights_only=True)


def test_our_export_writes_peft_s_key_names_shapes_and_settings(tmp_path):
    save_model_dir(tmp_path / "base", tiny_model(vocab_size=50), WordTokenizer(BASE_WORDS))
    make_adapter(tmp_path, "ours", ["risotto"], CONFIG, 1)
    export_peft(tmp_path / "ours", tmp_path / "peft", use_safetensors=False)
    ours = torch.load(tmp_path / "peft" / PEFT_BIN, weights_only=True)
    theirs = peft_tensors()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    written, saved_by_peft = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text()), json.loads((FIXTURE / PEFT_CONFIG).read_text())
    for key in ("peft_type", "r", "lora_alpha", "lora_dropout", "bias", "fan_in_fan_out", "use_rslora", "use_dora"):
        assert written[key] == saved_by_peft[key], key
    assert sorted(written["target_modules"]) == sorted(saved_by_peft["target_modules"])
    assert set(peft_config(CONFIG)) <= set(saved_by_peft)  # every field we write is one PEFT knows


def test_peft_s_tensors_in_our_lora_layers_compute_peft_s_logits():
    settings = json.loads((FIXTURE / PEFT_CONFIG).read_text())
    config = LoRAConfig(r=settings["r"], lora_alpha=settings["lora_alpha"], target_modules=list(settings["target_modules"]),
                        use_rslora=settings["use_rslora"])
    model = tiny_model(vocab_size=50)
    model.load_state_dict(torch.load(FIXTURE / "base_model.pt", weights_only=True))
    apply_lora(model, config)
    load_lora_state_dict(model, {k[len(PREFIX):]: v for k, v in peft_tensors().items()}, source="the PEFT fixture")
    expected = torch.load(FIXTURE / "peft_logits.pt", weights_only=True)
    got = model.eval()(torch.load(FIXTURE / "input_ids.pt", weights_only=True))[0]
    # The same operations in the same order (W x + b, then B A x times the scaling): equal up to float32 rounding.
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    scaled_as_plain_lora = LoRAConfig(**{**config.to_dict(), "use_rslora": False})
    plain = tiny_model(vocab_size=50)
    plain.load_state_dict(torch.load(FIXTURE / "base_model.pt", weights_only=True))
    apply_lora(plain, scaled_as_plain_lora)
    load_lora_state_dict(plain, {k[len(PREFIX):]: v for k, v in peft_tensors().items()})
    assert not torch.allclose(plain.eval()(torch.load(FIXTURE / "input_ids.pt", weights_only=True))[0], expected, atol=1e-3)
