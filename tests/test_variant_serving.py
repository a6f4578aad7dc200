"""Every LoRA variant's adapter served exactly: through AdapterServer and generate.py as through load_adapter, or refused.

rsLoRA scales by alpha / sqrt(r), not alpha / r: the server must use the
adapter's own factor. DoRA (a trained magnitude per row) and QLoRA (trained on
the 4-bit NF4 base) are not additive updates on the float base the server
shares, so the server refuses them in one line, and generate.py serves them on
their own through load_adapter, exactly as trained.
"""

import pytest
import torch

from conftest import tiny_model
from experiment.serving.generation import ModelChoice
from experiment.serving.server import AdapterServer
from experiment.training.adapter import load_adapter, save_adapter
from experiment.training.methods import prepare_lora
from experiment.training.variants import variant_config
from lora import LoRAConfig, lora_layers
from minigpt.checkpoint import model_fingerprint, save_model_dir
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer

BASE_WORDS = ["<pad>", "<unk>", "<eot>"] + [f"w{i}" for i in range(47)]
NEW_WORDS = ["risotto", "saffron"]
VARIANTS = ["lora", "rslora", "loraplus", "dora", "qlora"]
SERVED_BY_THE_SERVER = {"lora", "rslora", "loraplus"}


def variant(name: str) -> LoRAConfig:
    config = LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], quant_block_size=16)
    return config if name == "lora" else variant_config(config, name)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """One adapter per variant on one tiny base, with non-zero B (and DoRA magnitudes moved off the row norms)."""
    root = tmp_path_factory.mktemp("variants")
    base_tokenizer = WordTokenizer(BASE_WORDS)
    save_model_dir(root / "base", tiny_model(vocab_size=50), base_tokenizer)
    extended = base_tokenizer.copy()
    extended.extend(NEW_WORDS)
    for seed, name in enumerate(VARIANTS):
        model = tiny_model(vocab_size=50)
        model.resize_token_embeddings(extended.vocab_size)
        prepare_lora(model, 50, variant(name))
        torch.manual_seed(seed)
        with torch.no_grad():
            for layer in lora_layers(model).values():
                layer.lora_B.weight.normal_(std=0.3)
                if hasattr(layer, "lora_magnitude"):
                    layer.lora_magnitude.mul_(1 + 0.2 * torch.randn_like(layer.lora_magnitude))
            model.token_embedding.new_rows.normal_(std=0.3)
        save_adapter(root / name, model, variant(name), extended, model_fingerprint(tiny_model(vocab_size=50)), 50)
    return root


def sample_ids(tokenizer) -> torch.Tensor:
    words = tokenizer.id_to_token[3:]
    return torch.tensor([tokenizer.encode(" ".join(words[::3] + NEW_WORDS + words[1::5]))[:16]])


def test_rslora_scaling_differs_from_plain_lora_here():
    assert variant("rslora").scaling == 4.0 and variant("lora").scaling == 2.0  # 8 / sqrt(4) against 8 / 4


@pytest.mark.parametrize("name", sorted(SERVED_BY_THE_SERVER))
def test_the_server_gives_the_logits_of_load_adapter_bit_for_bit(adapters, name):
    alone, tokenizer, _ = load_adapter(adapters / name, adapters / "base")
    server = AdapterServer.from_base_dir(adapters / "base")
    server.load(name, adapters / name)
    server.use(name)
    ids = sample_ids(tokenizer)
    assert server.tokenizer.id_to_token == tokenizer.id_to_token  # one adapter: the union is its vocabulary
    with torch.no_grad():
        assert torch.equal(server.model(ids)[0], alone(ids)[0])


@pytest.mark.parametrize("name, reason", [("dora", "DoRA"), ("qlora", "4-bit NF4")])
def test_the_server_refuses_dora_and_qlora_in_one_line_saying_why(adapters, name, reason):
    server = AdapterServer.from_base_dir(adapters / "base")
    with pytest.raises(UserError, match=reason) as caught:
        server.load(name, adapters / name)
    assert "\n" not in str(caught.value)
    assert server.names == [] and server.tokenizer.vocab_size == 50  # nothing of it stayed behind


@pytest.mark.parametrize("name", VARIANTS)
def test_generate_gives_the_tokens_of_load_adapter_for_every_variant(adapters, name):
    alone, tokenizer, _ = load_adapter(adapters / name, adapters / "base")
    choice = ModelChoice(adapters / "base", [(name, adapters / name)], [], "cpu")
    choice.select(name)
    prompt = "w3 w7 risotto w11"
    text, _, _ = choice.generate(prompt, 12, 0.0, None, 0, True)
    ids = torch.tensor([[tokenizer.eot_id] + tokenizer.encode(prompt)])
    expected = alone.generate(ids, 12, temperature=0.0, use_cache=True)[0, ids.shape[1]:].tolist()
    if tokenizer.eot_id in expected:
        expected = expected[: expected.index(tokenizer.eot_id)]
    assert text == tokenizer.decode(tokenizer.encode(prompt) + expected)
    with torch.no_grad():  # and the very logits, not only the argmax
        model, _ = choice.current()
        assert torch.equal(model(sample_ids(tokenizer))[0], alone(sample_ids(tokenizer))[0])


def test_a_dora_or_qlora_adapter_cannot_be_mixed_and_says_why(adapters):
    choice = ModelChoice(adapters / "base", [("plain", adapters / "lora"), ("dora", adapters / "dora")], [], "cpu")
    with pytest.raises(UserError, match="DoRA or QLoRA adapter, served on its own"):
        choice.select("plain=0.5,dora=0.5")


@pytest.mark.parametrize("mix, fragment", [("plain=2", "from 0 to 1"), ("plain=1e300", "from 0 to 1"),
                                           ("plain=0.5 plain=0.5", "appears twice")])
def test_generate_checks_mix_weights(adapters, mix, fragment):
    choice = ModelChoice(adapters / "base", [("plain", adapters / "lora")], [], "cpu")
    with pytest.raises(UserError, match=fragment):
        choice.select(mix)


def test_a_mix_written_with_spaces_reads_as_two_adapters():
    from experiment.serving.generation import parse_mix
    assert parse_mix("cooking=0.5 sport=0.5") == parse_mix("cooking = 0.5, sport=0.5") == {"cooking": 0.5, "sport": 0.5}
