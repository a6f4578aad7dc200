"""Prefix tuning, prompt tuning and IA3 from peft_methods/ give Hugging Face PEFT's logits with the same tensors.

Without peft: against tests/fixtures/peft_reference.pt, saved by real PEFT with
tests/fixtures/make_peft_reference.py (versions recorded inside). With peft
installed: the same comparison against PEFT run now.
"""

import sys

import pytest
import torch

from conftest import REPO
from minigpt.config import GPTConfig
from minigpt.model import MiniGPT
from peft_methods import IA3Config, PrefixTuningConfig, PromptTuningConfig, apply_ia3, apply_prefix_tuning, apply_prompt_tuning

FIXTURE = REPO / "tests" / "fixtures" / "peft_reference.pt"


def ours(reference: dict, method: str) -> torch.Tensor:
    """Our method on the same tiny MiniGPT, carrying PEFT's tensors; its logits on the same input."""
    model = MiniGPT(GPTConfig(**reference["config"])).eval()
    model.load_state_dict(reference["minigpt_state"], strict=True)
    tensors = reference[method]["tensors"]
    if method == "prefix":
        apply_prefix_tuning(model, PrefixTuningConfig(reference["prefix"]["num_virtual_tokens"], prefix_projection=True,
                                                      encoder_hidden_size=reference["prefix"]["encoder_hidden_size"]))
        model.extra_key_values.load_state_dict(tensors, strict=True)  # PEFT's PrefixEncoder names: embedding, transform.0/2
    elif method == "prompt":
        apply_prompt_tuning(model, PromptTuningConfig(reference["prompt"]["num_virtual_tokens"], "RANDOM"))
        model.extra_embeddings.load_state_dict(tensors, strict=True)
    else:
        apply_ia3(model, IA3Config(("k_proj", "v_proj", "down_proj"), ("down_proj",)))
        ours_by_layer = {name.removesuffix(".ia3_scale"): p for name, p in model.named_parameters() if name.endswith("ia3_scale")}
        assert len(ours_by_layer) == len(tensors)
        with torch.no_grad():
            for name, value in tensors.items():  # PEFT: base_model.model.<layer>.ia3_l.default, (out, 1) or (1, in)
                ours_by_layer[name.removeprefix("base_model.model.").removesuffix(".ia3_l.default")].copy_(value.flatten())
    with torch.no_grad():
        return model(reference["input_ids"])[0]


@pytest.mark.parametrize("method", ["prefix", "prompt", "ia3"])
def test_our_logits_equal_the_logits_peft_saved(method):
    reference = torch.load(FIXTURE, weights_only=True)
    base = MiniGPT(GPTConfig(**reference["config"])).eval()
    base.load_state_dict(reference["minigpt_state"], strict=True)
    with torch.no_grad():  # the method really acts in the fixture: its logits are not the base's
        assert (base(reference["input_ids"])[0] - reference[method]["logits"]).abs().max() > 1e-3
    assert torch.allclose(ours(reference, method), reference[method]["logits"], atol=2e-5, rtol=0)


def test_our_logits_equal_peft_run_now():
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    sys.path.insert(0, str(FIXTURE.parent))
    from make_peft_reference import peft_reference  # noqa: PLC0415  (the script that made the fixture)

    reference = peft_reference()
    for method in ("prefix", "prompt", "ia3"):
        assert torch.allclose(ours(reference, method), reference[method]["logits"], atol=2e-5, rtol=0), method
