"""Replay mixing: the measured share of pretraining windows per batch, determinism, the training hook, bad fractions."""

import pytest
import torch

from conftest import DATA, FINETUNE_DATA_FLAGS, assert_one_line_error, run_main, tiny_model
from experiment.training.replay import mixed_batch_drawer, replay_windows
from minigpt.plumbing.errors import UserError
from minigpt.training import TrainConfig, train

NEW = torch.arange(0, 500) % 40  # new-domain ids 0..39
OLD = 40 + torch.arange(0, 500) % 10  # pretraining ids 40..49: a window's origin is visible in its ids


@pytest.mark.parametrize("fraction, batch_size, replayed", [(0.0, 32, 0), (0.1, 32, 3), (0.25, 32, 8), (0.25, 6, 2), (0.5, 8, 4)])
def test_each_batch_holds_round_fraction_times_batch_replayed_windows(fraction, batch_size, replayed):
    draw = mixed_batch_drawer(NEW, OLD, fraction, 16, batch_size)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, y = draw(generator)
        assert x.shape == y.shape == (batch_size, 16)
        from_old = (x >= 40).all(dim=1)
        assert int(from_old.sum()) == replayed
        assert not ((x >= 40).any(dim=1) & ~from_old).any()  # no window mixes the two corpora


def test_replayed_batches_are_the_same_for_the_same_seed_and_differ_for_another():
    draw = mixed_batch_drawer(NEW, OLD, 0.25, 16, 8)
    first = [draw(torch.Generator().manual_seed(3))[0] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    assert not torch.equal(first[0], draw(torch.Generator().manual_seed(4))[0])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 0.99])
def test_a_fraction_that_leaves_no_new_window_is_refused(fraction):
    with pytest.raises(UserError, match="replay"):
        replay_windows(fraction, 32)


def test_train_draws_every_training_batch_from_the_hook():
    model, drawn = tiny_model(vocab_size=50), []
    draw = mixed_batch_drawer(NEW, OLD, 0.5, 16, 4)

    def recording(generator):
        drawn.append(draw(generator))
        return drawn[-1]

    train(model, NEW, NEW, TrainConfig(steps=3, batch_size=4, eval_interval=3, eval_batches=1), "cpu", show_progress=False,
          draw_batch=recording)
    assert len(drawn) == 3 and all(int((x >= 40).all(dim=1).sum()) == 2 for x, _ in drawn)


@pytest.mark.parametrize("value", ["1", "-0.2", "abc"])
def test_train_finetune_refuses_a_replay_fraction_outside_0_1(tmp_path, monkeypatch, capsys, value):
    status, _, err = run_main("train_finetune", ["--replay", value, "--pretrained", tmp_path, *FINETUNE_DATA_FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "--replay")


def test_replay_reaches_the_training_loop_of_a_real_run(pipeline, tmp_path, monkeypatch, capsys):
    """train_finetune.py --replay 0.25 with batch 8: two of every batch's eight windows come from the pretraining corpus."""
    import experiment.training.finetuning as finetuning
    from minigpt.data import encode_documents, read_corpus, split_documents, split_train_val
    from minigpt.tokenizer import WordTokenizer
    seen, real_train = [], finetuning.train

    def recording_train(*args, **kwargs):
        draw = args[8] if len(args) > 8 else kwargs.get("draw_batch")
        if draw is not None:
            def recording_draw(generator):
                x, y = draw(generator)
                seen.append(x.clone())
                return x, y
            args = (*args[:8], recording_draw, *args[9:])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(finetuning, "train", recording_train)
    status, _, err = run_main("train_finetune", ["--pretrained", pipeline["pretrained"], "--out", tmp_path / "out", *FINETUNE_DATA_FLAGS,
                                                 "--method", "lora", "--steps", "3", "--eval-interval", "3", "--batch-size", "8",
                                                 "--replay", "0.25", "--no-progress"], monkeypatch, capsys)
    assert status == 0, err
    assert len(seen) == 3, "the replay batch drawer never reached the training loop"
    tokenizer = WordTokenizer.load(tmp_path / "out" / "lora_adapter" / "tokenizer.json")
    block = seen[0].shape[1]

    def windows(path) -> set:
        ids = encode_documents(split_train_val(split_documents(read_corpus(path)))[0], tokenizer).tolist()
        return {tuple(ids[i:i + block]) for i in range(len(ids) - block)}

    old, new = windows(DATA / "pretrain.txt"), windows(DATA / "cooking.txt")
    rows = [tuple(row) for x in seen for row in x.tolist()]
    assert all(row in old or row in new for row in rows)  # every window is one of the two corpora's
    only_old = sum(row in old and row not in new for row in rows)
    both = sum(row in old and row in new for row in rows)  # a window both corpora contain: origin unknown
    assert abs(only_old / len(rows) - 0.25) <= both / len(rows)  # measured: round(0.25 * 8) = 2 of every 8 windows
    assert only_old > 0
    assert all(tuple(row) in old for x in seen for row in x.tolist()[6:])  # the drawer appends the replayed windows
