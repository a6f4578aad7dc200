"""Replay mixing: the measured share of pretraining windows per batch, determinism, the training hook, bad fractions."""

import pytest
import torch

from conftest import FINETUNE_DATA_FLAGS, assert_one_line_error, run_main, tiny_model
from experiment.training.replay import mixed_batch_drawer, replay_windows
from minigpt.io import UserError
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
