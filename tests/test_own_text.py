"""A user's own text: defaults taken from what the results record, prompts in the corpus's own words, overfitting said."""

import pytest
import torch

from conftest import tiny_model
from experiment.training.data import recorded_finetune_corpus
from minigpt.evaluation import prompts_for
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer
from minigpt.training import TrainConfig, estimate_loss, overfitting_note, train


def test_prompts_for_a_foreign_corpus_come_from_its_own_validation_text():
    tokenizer = WordTokenizer(["<pad>", "<unk>", "<eot>", "the", "licensee", "shall", "grant", "a", "licence", "capital"])
    documents = ["the licensee shall grant a licence to any person .", "a licence shall be granted ."]
    assert prompts_for(tokenizer, ["the capital of france is"], documents) == ["the licensee shall grant a", "a licence shall be granted"]
    assert prompts_for(tokenizer, ["the capital"], documents) == ["the capital"]  # words it knows: the defaults stay


def test_the_recorded_corpus_is_used_and_checked(tmp_path):
    from experiment.training.data import corpus_record
    corpus = tmp_path / "licences.txt"
    corpus.write_text("the licensee shall grant a licence.\n")
    metrics = {"data_corpus": corpus_record(corpus), "settings": {"data": "data/cooking.txt"}}
    assert recorded_finetune_corpus(metrics, tmp_path) == str(corpus.resolve())
    corpus.write_text("changed\n")
    with pytest.raises(UserError, match="has changed .* pass the original corpus with --data"):
        recorded_finetune_corpus(metrics, tmp_path)
    corpus.unlink()
    with pytest.raises(UserError, match="no longer exists; pass that corpus with --data"):
        recorded_finetune_corpus(metrics, tmp_path)
    # compare_adapters.py and generate.py have no --data: the error names their flag, and generate.py, which only
    # names the adapter after the corpus, does not need it to exist.
    with pytest.raises(UserError, match="no longer exists; pass that corpus with --domain NAME=CORPUS"):
        recorded_finetune_corpus(metrics, tmp_path, flag="--domain NAME=CORPUS")
    assert recorded_finetune_corpus(metrics, tmp_path, check=False) == str(corpus.resolve())


def test_overfitting_is_said_only_after_several_evaluations_of_rising_loss():
    history = [{"step": 50 * i, "val_loss": v} for i, v in enumerate([3.0, 2.0, 1.5, 1.6, 1.7, 1.8])]
    assert "rose for the last 3 evaluations" in overfitting_note(history)
    assert "best 1.500 at step 100" in overfitting_note(history)
    assert overfitting_note(history[:5]) == ""  # two evaluations of rising loss: noise, not yet a trend
    assert overfitting_note([{"step": i, "val_loss": 3.0 - 0.1 * i} for i in range(8)]) == ""


def test_keep_best_leaves_the_model_with_the_lowest_evaluated_validation_loss():
    model = tiny_model(vocab_size=50)
    data = torch.randint(50, (400,), generator=torch.Generator().manual_seed(0))
    train_data, val_data = data[:300], torch.randint(50, (100,), generator=torch.Generator().manual_seed(1))  # unrelated: overfits
    config = TrainConfig(steps=12, batch_size=8, lr=3e-2, warmup_steps=1, eval_interval=2, eval_batches=2)
    result = train(model, train_data, val_data, config, "cpu", show_progress=False, keep_best=True)
    losses = {point["step"]: point["val_loss"] for point in result.history}
    assert result.best_step == min(losses, key=losses.get)
    assert estimate_loss(model, val_data, 8, 2, "cpu") == pytest.approx(min(losses.values()), abs=1e-6)


def test_a_finetune_worse_than_the_base_is_flagged(capsys):
    from train_finetune import print_summary
    before = {"finetune_val_loss": 2.0, "finetune_probe_accuracy": None, "pretrain_val_loss": 1.0}
    record = {"label": "LoRA (Q, K, V, O)", "parameters": {"trainable": 10, "trainable_percent": 1.0}, "train_seconds": 1.0,
              "eval_seconds": 0.1, "wall_seconds": 1.1,
              "after": {"finetune_val_loss": 2.5, "finetune_probe_accuracy": None, "pretrain_val_loss": 1.2}}
    import pathlib
    print_summary({"lora": record}, before, pathlib.Path("."), 1.0)
    assert "warning: LoRA (Q, K, V, O) made the new-domain validation loss worse than the base's (2.000 -> 2.500)" in capsys.readouterr().out
