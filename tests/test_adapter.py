import json

import pytest
import torch

from conftest import tiny_model
from lora import LoRAConfig, lora_layers
from experiment.training.adapter import load_adapter, save_adapter
from minigpt.checkpoint import model_fingerprint, save_model_dir
from minigpt.plumbing.errors import UserError
from experiment.training.methods import prepare_lora
from minigpt.tokenizer import WordTokenizer

BASE_WORDS = ["<pad>", "<unk>", "<eot>"] + [f"w{i}" for i in range(47)]


@pytest.fixture
def adapter(tmp_path):
    """A saved base model and an adapter with non-zero A, B and new rows trained on it."""
    base, tokenizer = tiny_model(vocab_size=50), WordTokenizer(BASE_WORDS)
    save_model_dir(tmp_path / "base", base, tokenizer)
    extended = tokenizer.copy()
    extended.extend(["risotto", "saffron", "miso"])
    model = tiny_model(vocab_size=50)
    model.resize_token_embeddings(53)
    config = LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    prepare_lora(model, 50, config)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.normal_(std=0.2)
        model.token_embedding.new_rows.normal_(std=0.2)
    save_adapter(tmp_path / "adapter", model, config, extended, model_fingerprint(base), 50)
    return tmp_path, model.eval()


def test_adapter_save_then_load_reproduces_the_logits(adapter):
    root, trained = adapter
    loaded, tokenizer, config = load_adapter(root / "adapter", root / "base")
    idx = torch.randint(53, (3, 12))
    assert torch.equal(loaded(idx)[0], trained(idx)[0])
    assert tokenizer.id_to_token[-3:] == ["risotto", "saffron", "miso"]
    assert config.target_modules == ["q_proj", "v_proj"]


def test_adapter_files_hold_only_the_adapter(adapter):
    root, _ = adapter
    lora_weights = torch.load(root / "adapter" / "lora_weights.pt", weights_only=True)
    assert all(".lora_A." in k or ".lora_B." in k for k in lora_weights) and len(lora_weights) == 2 * 2 * 2
    rows = torch.load(root / "adapter" / "embedding_weights.pt", weights_only=True)
    assert rows["token_ids"].tolist() == [50, 51, 52] and rows["rows"].shape == (3, 16)
    assert len(json.loads((root / "adapter" / "lora_config.json").read_text())["base_model_fingerprint"]) == 64


def test_an_adapter_is_refused_on_a_different_base(adapter, tmp_path):
    root, _ = adapter
    save_model_dir(root / "other", tiny_model(vocab_size=50, seed=123), WordTokenizer(BASE_WORDS))
    with pytest.raises(UserError, match="trained on a different base model"):
        load_adapter(root / "adapter", root / "other")


@pytest.mark.parametrize("name", ["lora_weights.pt", "embedding_weights.pt", "lora_config.json", "tokenizer.json"])
def test_a_missing_adapter_file_is_named(adapter, name):
    root, _ = adapter
    (root / "adapter" / name).unlink()
    with pytest.raises(UserError, match=f"missing {name}"):
        load_adapter(root / "adapter", root / "base")


def test_a_corrupted_adapter_tensor_file_is_a_user_error(adapter):
    root, _ = adapter
    (root / "adapter" / "lora_weights.pt").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match=r"lora_weights.pt is corrupted"):
        load_adapter(root / "adapter", root / "base")


def test_pickled_code_in_an_adapter_is_refused(adapter):
    root, _ = adapter
    torch.save({"x": torch.zeros(1), "f": print}, root / "adapter" / "embedding_weights.pt")
    with pytest.raises(UserError, match="weights_only"):
        load_adapter(root / "adapter", root / "base")


def test_unexpected_and_missing_adapter_keys_are_errors(adapter):
    root, _ = adapter
    path = root / "adapter" / "lora_weights.pt"
    state = torch.load(path, weights_only=True)
    torch.save({**state, "blocks.0.attention.k_proj.lora_A.weight": torch.zeros(2, 16)}, path)
    with pytest.raises(UserError, match="1 unexpected key"):
        load_adapter(root / "adapter", root / "base")
    state.pop("blocks.1.attention.v_proj.lora_B.weight")
    torch.save(state, path)
    with pytest.raises(UserError, match="1 missing key"):
        load_adapter(root / "adapter", root / "base")


def test_a_corrupted_adapter_config_is_a_user_error(adapter):
    root, _ = adapter
    (root / "adapter" / "lora_config.json").write_text('{"r": 2}')
    with pytest.raises(UserError, match="lora_config.json is corrupted"):
        load_adapter(root / "adapter", root / "base")


@pytest.mark.parametrize("change", [
    {"target_modules": [1]}, {"base_vocab_size": "50"}, {"base_model_fingerprint": 7}, {"r": 2.5}, {"lora_alpha": "8"},
])
def test_wrongly_typed_adapter_config_values_are_user_errors(adapter, change):
    root, _ = adapter
    path = root / "adapter" / "lora_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(UserError, match="lora_config.json is corrupted"):
        load_adapter(root / "adapter", root / "base")


@pytest.mark.parametrize("bad_rows", [
    torch.zeros(3, 16, dtype=torch.int64), torch.full((3, 16), float("nan")), torch.zeros(4, 16),
])
def test_new_rows_of_the_wrong_kind_are_refused(adapter, bad_rows):
    root, _ = adapter
    torch.save({"token_ids": torch.tensor([50, 51, 52]), "rows": bad_rows}, root / "adapter" / "embedding_weights.pt")
    with pytest.raises(UserError, match="embedding_weights.pt"):
        load_adapter(root / "adapter", root / "base")


def test_integer_lora_tensors_are_refused(adapter):
    root, _ = adapter
    path = root / "adapter" / "lora_weights.pt"
    state = {key: value.to(torch.int64) for key, value in torch.load(path, weights_only=True).items()}
    torch.save(state, path)
    with pytest.raises(UserError, match="not a floating-point tensor"):
        load_adapter(root / "adapter", root / "base")
