import json

import pytest
import torch

from conftest import tiny_model
from minigpt.checkpoint import load_model_dir, model_fingerprint, save_model_dir
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer


def tokenizer_of_size(n: int) -> WordTokenizer:
    return WordTokenizer(["<pad>", "<unk>", "<eot>"] + [f"w{i}" for i in range(n - 3)])


@pytest.fixture
def saved(tmp_path):
    model = tiny_model(vocab_size=30)
    save_model_dir(tmp_path / "model", model, tokenizer_of_size(30))
    return model, tmp_path / "model"


def test_save_then_load_gives_identical_logits(saved):
    model, path = saved
    loaded, tokenizer = load_model_dir(path)
    idx = torch.randint(30, (2, 9))
    assert torch.equal(model(idx)[0], loaded(idx)[0])
    assert tokenizer.vocab_size == 30
    assert loaded.lm_head.weight is loaded.token_embedding.weight


def test_saving_over_an_existing_model_replaces_it_and_leaves_no_temporary(saved):
    _, path = saved
    other = tiny_model(vocab_size=30, seed=9)
    save_model_dir(path, other, tokenizer_of_size(30))
    loaded, _ = load_model_dir(path)
    assert model_fingerprint(loaded) == model_fingerprint(other)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]


def test_an_interrupted_save_leaves_the_previous_model_intact(saved, monkeypatch):
    model, path = saved

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model_dir(path, tiny_model(vocab_size=30, seed=5), tokenizer_of_size(30))
    monkeypatch.undo()
    loaded, _ = load_model_dir(path)
    assert model_fingerprint(loaded) == model_fingerprint(model)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]


@pytest.mark.parametrize("missing", ["config.json", "model.pt", "tokenizer.json"])
def test_a_missing_file_is_named(saved, missing):
    _, path = saved
    (path / missing).unlink()
    with pytest.raises(UserError, match=f"missing {missing}"):
        load_model_dir(path)


def test_a_corrupted_weights_file_is_a_user_error(saved):
    _, path = saved
    (path / "model.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="model.pt is corrupted"):
        load_model_dir(path)


def test_a_truncated_weights_file_is_a_user_error(saved):
    _, path = saved
    data = (path / "model.pt").read_bytes()
    (path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupted"):
        load_model_dir(path)


def test_pickled_code_is_refused_by_weights_only(saved):
    _, path = saved
    torch.save({"weights": torch.zeros(2), "code": print}, path / "model.pt")
    with pytest.raises(UserError, match="weights_only"):
        load_model_dir(path)


def test_tokenizer_and_config_must_agree_on_vocabulary_size(saved):
    _, path = saved
    tokenizer_of_size(31).save(path / "tokenizer.json")
    with pytest.raises(UserError, match="31 tokens"):
        load_model_dir(path)


def test_a_corrupted_config_is_named(saved):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    config["n_head"] = 3  # 16 is not divisible by 3
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="config.json is corrupted"):
        load_model_dir(path)


def test_missing_directory_names_the_hint(tmp_path):
    with pytest.raises(UserError, match="run python train_pretrain.py first"):
        load_model_dir(tmp_path / "absent", hint="run python train_pretrain.py first")


def test_fingerprint_changes_when_one_weight_changes():
    model = tiny_model()
    before = model_fingerprint(model)
    with torch.no_grad():
        model.blocks[0].attention.q_proj.weight[0, 0] += 1e-3
    assert model_fingerprint(model) != before


def test_saving_never_replaces_a_directory_holding_other_files(tmp_path):
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt.*choose another --out"):
        save_model_dir(precious, tiny_model(vocab_size=30), tokenizer_of_size(30))
    assert (precious / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_an_interrupt_between_the_two_renames_puts_the_old_model_back(saved, monkeypatch):
    import os

    model, path = saved
    real_replace, calls = os.replace, []

    def replace_then_crash(source, target):
        calls.append(target)
        if len(calls) == 2:  # the new directory moving into place
            raise KeyboardInterrupt
        return real_replace(source, target)

    monkeypatch.setenv("MINIGPT_TEST_PORTABLE_SWAP", "1")  # the two-rename fallback (Linux swaps in one renameat2)
    monkeypatch.setattr(os, "replace", replace_then_crash)
    with pytest.raises(KeyboardInterrupt):
        save_model_dir(path, tiny_model(vocab_size=30, seed=5), tokenizer_of_size(30))
    monkeypatch.undo()
    assert model_fingerprint(load_model_dir(path)[0]) == model_fingerprint(model)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]
