import json

import pytest
import torch

from conftest import FINETUNE_DATA_FLAGS, assert_one_line_error, run_main, run_subprocess
from lora import LoRAConfig, LoRALinear
from experiment.training.adapter import load_adapter, save_adapter
from minigpt.checkpoint import load_model_dir, model_fingerprint, save_model_dir
from experiment.training.methods import grow_vocabulary, merge_lora_model, prepare_lora
from minigpt.config import GPTConfig
from minigpt.model import MiniGPT
from experiment.training.new_token_rows import join_new_token_rows


def test_finetuning_writes_every_promised_file(pipeline):
    out = pipeline["results"]
    expected = {"full_finetune", "layer_freezing", "lora_adapter", "lora_merged", "metrics.json", "parameter_counts.png", "loss_curves.png"}
    assert expected <= {p.name for p in out.iterdir()}
    for directory in ("full_finetune", "layer_freezing", "lora_merged"):
        assert sorted(p.name for p in (out / directory).iterdir()) == ["config.json", "model.pt", "run.json", "tokenizer.json"]
    assert sorted(p.name for p in (out / "lora_adapter").iterdir()) == [
        "embedding_weights.pt", "lora_config.json", "lora_weights.pt", "run.json", "tokenizer.json"]


def test_metrics_hold_every_figure_for_every_method(pipeline):
    metrics = json.loads((pipeline["results"] / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["full", "freeze", "lora"]
    assert len(metrics["new_words"]) >= 20
    for record in metrics["methods"].values():
        for key in ("history", "trainable_state_bytes", "train_seconds", "wall_seconds", "tokens_per_second", "parameters"):
            assert key in record
        for key in ("finetune_val_loss", "pretrain_val_loss", "finetune_probe_accuracy", "pretrain_probe_accuracy"):
            assert key in record["after"] and key in metrics["before"]
    lora, full = metrics["methods"]["lora"], metrics["methods"]["full"]
    assert lora["parameters"]["trainable"] < full["parameters"]["trainable"] / 5
    assert lora["trainable_state_bytes"] == 4 * 4 * lora["parameters"]["trainable"]  # fp32 params, grads, 2 moments


def test_a_default_size_adapter_is_under_ten_percent_of_the_merged_model(pipeline, tmp_path):
    """At the default width the adapter must be small; the tiny test model is too small for the claim
    (its tokenizer.json alone outweighs its tensors), so this builds the default shapes, untrained."""
    _, base_tokenizer = load_model_dir(pipeline["pretrained"])
    tokenizer = base_tokenizer.copy()
    tokenizer.extend(json.loads((pipeline["results"] / "metrics.json").read_text())["new_words"])
    torch.manual_seed(0)
    base = MiniGPT(GPTConfig(vocab_size=base_tokenizer.vocab_size))
    model = grow_vocabulary(base, tokenizer.vocab_size, seed=0)
    prepare_lora(model, base_tokenizer.vocab_size, LoRAConfig())
    save_adapter(tmp_path / "adapter", model, LoRAConfig(), tokenizer, model_fingerprint(base), base_tokenizer.vocab_size)
    save_model_dir(tmp_path / "merged", merge_lora_model(model), tokenizer)

    def size(name):
        return sum(p.stat().st_size for p in (tmp_path / name).iterdir())
    assert size("adapter") < 0.10 * size("merged")


def test_lora_merged_loads_strictly_into_a_plain_minigpt_and_matches_the_adapter(pipeline):
    merged_dir = pipeline["results"] / "lora_merged"
    config = GPTConfig.from_dict(json.loads((merged_dir / "config.json").read_text()))
    plain = MiniGPT(config)
    plain.load_state_dict(torch.load(merged_dir / "model.pt", weights_only=True), strict=True)
    assert not any(isinstance(m, LoRALinear) for m in plain.modules())
    adapter_model, tokenizer, _ = load_adapter(pipeline["results"] / "lora_adapter", pipeline["pretrained"])
    join_new_token_rows(adapter_model)
    idx = torch.randint(tokenizer.vocab_size, (3, config.block_size))
    assert (plain.eval()(idx)[0] - adapter_model(idx)[0]).abs().max().item() < 1e-5


def test_old_embedding_rows_are_unchanged_by_freezing_and_lora_but_not_by_full(pipeline):
    base, base_tokenizer = load_model_dir(pipeline["pretrained"])
    n = base_tokenizer.vocab_size
    rows = {name: load_model_dir(pipeline["results"] / name)[0].token_embedding.weight[:n]
            for name in ("layer_freezing", "lora_merged", "full_finetune")}
    assert torch.equal(rows["layer_freezing"], base.token_embedding.weight)
    assert torch.equal(rows["lora_merged"], base.token_embedding.weight)
    assert not torch.equal(rows["full_finetune"], base.token_embedding.weight)


def test_a_missing_pretrained_model_says_to_run_pretraining_first(tmp_path):
    result = run_subprocess("train_finetune", ["--pretrained", tmp_path / "nothing"])
    assert_one_line_error(result.returncode, result.stderr, "does not exist", "run python train_pretrain.py first")


def test_an_unknown_method_is_refused(monkeypatch, capsys):
    status, _, err = run_main("train_finetune", ["--method", "sparse"], monkeypatch, capsys)
    assert_one_line_error(status, err, "--method", "invalid choice: 'sparse'")


@pytest.mark.parametrize("flags, message", [
    (["--targets", "q_proj,query"], "'query' matches no nn.Linear"),
    (["--rank", "17"], "rank 17 is larger than"),
    (["--rank", "0"], "--rank: must be at least 1"),
    (["--alpha", "0"], "--alpha: must be greater than 0"),
    (["--alpha", "-1"], "--alpha: must be greater than 0"),
])
def test_bad_lora_settings_are_refused_before_training(pipeline, tmp_path, monkeypatch, capsys, flags, message):
    args = ["--pretrained", pipeline["pretrained"], "--out", tmp_path / "out", *FINETUNE_DATA_FLAGS, *flags]
    status, out, err = run_main("train_finetune", args, monkeypatch, capsys)
    assert_one_line_error(status, err, message)
    assert "trainable" not in out  # nothing trained


def test_a_corrupted_pretrained_checkpoint_is_named(pipeline, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (broken / name).write_bytes((pipeline["pretrained"] / name).read_bytes())
    (broken / "model.pt").write_bytes((pipeline["pretrained"] / "model.pt").read_bytes()[:1000])
    status, _, err = run_main("train_finetune", ["--pretrained", broken, *FINETUNE_DATA_FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "model.pt is corrupted")


def test_a_pretraining_corpus_too_short_for_one_window_is_named(pipeline, tmp_path, monkeypatch, capsys):
    (tmp_path / "short.txt").write_text("\n\n".join(["the cow says moo."] * 12))
    flags = [*FINETUNE_DATA_FLAGS]
    flags[flags.index("--pretrain-corpus") + 1] = tmp_path / "short.txt"
    status, _, err = run_main("train_finetune", ["--pretrained", pipeline["pretrained"], "--out", tmp_path / "o", *flags],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "short.txt's validation split", "fewer than one context window")
