"""experiment/serving/server.py: adapter directories served together on one base, with the union vocabulary."""

import pytest
import torch

from conftest import tiny_model
from experiment.training.adapter import load_adapter, save_adapter
from experiment.serving.server import AdapterServer
from experiment.training.methods import prepare_lora
from lora import LoRAConfig, lora_layers
from minigpt.checkpoint import model_fingerprint, save_model_dir
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer

BASE_WORDS = ["<pad>", "<unk>", "<eot>"] + [f"w{i}" for i in range(47)]


def make_adapter(root, name, words, config, seed):
    """Save an adapter with non-zero B and new rows for `words`, trained (randomly) on the tiny base at root/base."""
    base, tokenizer = tiny_model(vocab_size=50), WordTokenizer(BASE_WORDS)
    extended = tokenizer.copy()
    extended.extend(words)
    model = tiny_model(vocab_size=50)
    model.resize_token_embeddings(extended.vocab_size)
    prepare_lora(model, 50, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.normal_(std=0.3)
        model.token_embedding.new_rows.normal_(std=0.3)
    save_adapter(root / name, model, config, extended, model_fingerprint(base), 50)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    save_model_dir(root / "base", tiny_model(vocab_size=50), WordTokenizer(BASE_WORDS))
    make_adapter(root, "cooking", ["risotto", "ramen", "saffron"], LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]), 1)
    make_adapter(root, "sport", ["tennis", "ramen", "racket", "golf"], LoRAConfig(r=3, lora_alpha=6, target_modules=["k_proj", "o_proj"]), 2)
    return root


@pytest.fixture
def server(adapters):
    server = AdapterServer.from_base_dir(adapters / "base")
    server.load("cooking", adapters / "cooking")
    server.load("sport", adapters / "sport")
    return server


def test_the_union_vocabulary_keeps_old_ids_and_names_the_shared_word(server):
    assert server.tokenizer.id_to_token[:50] == BASE_WORDS
    assert server.tokenizer.id_to_token[50:] == ["risotto", "ramen", "saffron", "tennis", "racket", "golf"]
    assert server.shared_words == {"cooking": [], "sport": ["ramen"]}


def test_with_no_adapter_active_the_logits_are_the_base_logits_bit_for_bit(server, adapters):
    idx = torch.randint(56, (2, 10), generator=torch.Generator().manual_seed(0))
    server.use(None)
    logits = server.model(idx)[0]
    base = tiny_model(vocab_size=50)
    base_idx = torch.where(idx < 50, idx, torch.ones_like(idx))  # new words read as <unk>
    assert torch.equal(logits[..., :50], base(base_idx)[0])
    assert torch.isinf(logits[..., 50:]).all()


@pytest.mark.parametrize("name", ["cooking", "sport"])
def test_one_active_adapter_gives_exactly_the_logits_of_that_adapter_alone(server, adapters, name):
    alone, tokenizer, _ = load_adapter(adapters / name, adapters / "base")
    words = tokenizer.id_to_token
    text = " ".join(words[3:] + words[3:][::-1])
    server.use(name)
    ids_alone = torch.tensor([tokenizer.encode(text)[:16]])
    ids_union = torch.tensor([server.tokenizer.encode(text)[:16]])
    union_columns = [server.tokenizer.token_to_id[w] for w in words]
    logits = server.model(ids_union)[0]
    assert torch.equal(logits[..., union_columns], alone(ids_alone)[0])
    others = sorted(set(range(server.tokenizer.vocab_size)) - set(union_columns))
    assert torch.isinf(logits[..., others]).all()


def test_a_shared_word_uses_the_active_adapters_row_and_the_weighted_mean_in_a_mix(server, adapters):
    ramen = server.tokenizer.token_to_id["ramen"]
    rows = {n: torch.load(adapters / n / "embedding_weights.pt", weights_only=True)["rows"] for n in ("cooking", "sport")}
    cooking_row, sport_row = rows["cooking"][1], rows["sport"][1]
    for weights, expected in (({"cooking": 1.0}, cooking_row), ({"sport": 1.0}, sport_row),
                              ({"cooking": 1.0, "sport": 3.0}, 0.25 * cooking_row + 0.75 * sport_row)):
        server.mix(weights)
        ids, visible_rows = server.vocabulary.visible()
        torch.testing.assert_close(visible_rows[ids.tolist().index(ramen)], expected)


def test_switching_back_and_forth_leaves_every_base_weight_bit_identical(server):
    before = {k: v.clone() for k, v in server.model.state_dict().items()}
    idx = torch.randint(56, (1, 8))
    for step in range(40):
        server.use(["cooking", "sport", None][step % 3])
        server.mix({"cooking": 0.5, "sport": 0.5})
        server.model(idx)
    assert all(torch.equal(before[k], v) for k, v in server.model.state_dict().items())


def test_deleting_an_adapter_keeps_the_other_adapters_ids(server):
    golf = server.tokenizer.token_to_id["golf"]
    server.delete("cooking")
    assert server.names == ["sport"] and server.tokenizer.token_to_id["golf"] == golf
    server.use("sport")
    assert server.unknown_words("risotto with golf") == ["risotto", "with"]


def test_errors_name_the_problem(server, adapters):
    with pytest.raises(UserError, match="unknown adapter 'chess'; loaded adapters: cooking, sport"):
        server.use("chess")
    with pytest.raises(UserError, match="must be a finite number"):
        server.mix({"cooking": "half"})
    with pytest.raises(UserError, match="already loaded"):
        server.load("sport", adapters / "sport")
    save_model_dir(adapters / "other_base", tiny_model(vocab_size=50, seed=9), WordTokenizer(BASE_WORDS))
    other = AdapterServer.from_base_dir(adapters / "other_base")
    with pytest.raises(UserError, match="trained on a different base model"):
        other.load("cooking", adapters / "cooking")
