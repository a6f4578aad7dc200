import pytest
import torch

from conftest import tiny_model
from minigpt.plumbing.errors import UserError
from minigpt.training import TrainConfig, learning_rate_at, train

# A repeating pattern a tiny model can learn in a few steps.
PATTERN = torch.arange(10).repeat(60)


def quick_config(**overrides) -> TrainConfig:
    values = dict(steps=25, batch_size=8, lr=1e-2, warmup_steps=3, eval_interval=5, eval_batches=2, seed=7)
    return TrainConfig(**{**values, **overrides})


def test_a_few_steps_lower_the_loss():
    model = tiny_model(vocab_size=10)
    result = train(model, PATTERN, PATTERN, quick_config(), "cpu", show_progress=False)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"] - 0.5
    assert last["val_loss"] < first["val_loss"] - 0.5


def test_history_records_step_tokens_and_both_losses():
    result = train(tiny_model(vocab_size=10), PATTERN, PATTERN, quick_config(), "cpu", show_progress=False)
    assert [r["step"] for r in result.history] == [0, 5, 10, 15, 20, 25]
    assert result.history[-1]["tokens_seen"] == 25 * 8 * 16
    assert set(result.history[0]) == {"step", "tokens_seen", "train_loss", "val_loss"}
    assert result.tokens_per_second > 0


def test_the_same_seed_gives_the_same_losses_twice():
    runs = [train(tiny_model(vocab_size=10, seed=3), PATTERN, PATTERN, quick_config(), "cpu", show_progress=False)
            for _ in range(2)]
    assert runs[0].history == runs[1].history


def test_a_different_seed_gives_different_losses():
    a = train(tiny_model(vocab_size=10), PATTERN, PATTERN, quick_config(seed=1), "cpu", show_progress=False)
    b = train(tiny_model(vocab_size=10), PATTERN, PATTERN, quick_config(seed=2), "cpu", show_progress=False)
    assert a.history[-1]["train_loss"] != b.history[-1]["train_loss"]


def test_frozen_parameters_do_not_change_and_hold_no_optimizer_state():
    model = tiny_model(vocab_size=10)
    model.position_embedding.weight.requires_grad_(False)
    frozen = model.position_embedding.weight.detach().clone()
    result = train(model, PATTERN, PATTERN, quick_config(steps=5), "cpu", show_progress=False)
    assert torch.equal(model.position_embedding.weight, frozen)
    trainable_bytes = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    assert result.trainable_state_bytes == 4 * trainable_bytes  # parameters + gradients + two AdamW moments


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate_at(0, config) == 0.1
    assert learning_rate_at(9, config) == 1.0
    assert learning_rate_at(10, config) == 1.0
    assert abs(learning_rate_at(100, config) - 0.1) < 1e-9
    rates = [learning_rate_at(s, config) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


CPU_ALLOCATION_FAILED = RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")


@pytest.mark.parametrize("error, becomes_one_line", [
    (CPU_ALLOCATION_FAILED, True),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB, other allocations: 0 bytes)"), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),  # a bug, not the user's batch: its traceback stays
])
def test_running_out_of_memory_while_training_is_one_line_that_names_the_batch(error, becomes_one_line):
    model = tiny_model()
    calls = []

    def forward(*args, **kwargs):  # the first evaluation works; the training step's allocation fails
        calls.append(1)
        if len(calls) > 2:
            raise error
        return type(model).forward(model, *args, **kwargs)

    model.forward = forward
    data = torch.randint(50, (500,))
    config = TrainConfig(steps=3, batch_size=4, eval_interval=3, eval_batches=1)
    with pytest.raises(UserError if becomes_one_line else type(error)) as raised:
        train(model, data, data, config, "cpu", show_progress=False)
    if becomes_one_line:
        message = str(raised.value)
        assert "out of memory with batches of 4 windows of 16 tokens" in message and "lower --batch-size" in message
