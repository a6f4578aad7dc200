"""The one training loop that pretraining and every fine-tuning method share.

A method differs only in which parameters have `requires_grad=True`: the loop
hands exactly those to AdamW, so frozen weights get no gradient, no optimizer
state and no update. Schedule: linear warmup, then cosine decay to 10% of the
peak learning rate. Gradients are clipped to a global norm of 1.0.

Every `eval_interval` steps the mean loss on a fixed set of train and validation
batches is recorded (the same batches every time, so the curve shows the model
changing, not the sample). The history is a list of
{step, tokens_seen, train_loss, val_loss}.
"""

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
from tqdm.auto import tqdm

from minigpt.data import get_batch
from minigpt.distributed import local_share, mean_over_processes, wrap_for_data_parallel, world_size
from minigpt.plumbing.errors import UserError

EVAL_SEED = 1234  # fixed: every evaluation, of every model, sees the same batches


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-2  # high for a transformer, but this one is tiny; warmup and clipping keep it stable
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 50
    eval_batches: int = 8
    seed: int = 1337


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0  # optimisation steps only, evaluations excluded
    wall_seconds: float = 0.0  # everything, evaluations included
    eval_seconds: float = 0.0  # the periodic evaluations alone (--eval-interval sets how often)
    tokens_seen: int = 0
    tokens_per_second: float = 0.0
    trainable_parameters: int = 0
    trainable_state_bytes: int = 0  # parameters + gradients + AdamW moments, measured
    best_step: int | None = None  # with keep_best: the evaluated step whose weights the model holds at the end

    def to_dict(self) -> dict:
        return asdict(self)


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to config.lr, then cosine decay to config.lr * min_lr_ratio."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, config: TrainConfig, parameter_groups: list[dict] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only; matrices decay, biases and norms do not.

    `parameter_groups` replaces that default grouping (for example LoRA+, where
    one group learns faster); each group's lr is kept as a multiple of config.lr,
    so the warmup and cosine schedule scale every group alike.
    """
    if parameter_groups is None:
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not trainable:
            raise ValueError("the model has no trainable parameters")
        decay = [p for p in trainable.values() if p.dim() >= 2]
        no_decay = [p for p in trainable.values() if p.dim() < 2]
        parameter_groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [{**g, "lr_multiplier": g.get("lr", config.lr) / config.lr} for g in parameter_groups if g["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


@torch.no_grad()
def estimate_loss(model, data: torch.Tensor, batch_size: int, num_batches: int, device) -> float:
    """Mean loss over num_batches fixed batches (drawn with EVAL_SEED)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(EVAL_SEED)
    block_size = model.text_positions()  # block_size, less positions prefix or prompt tuning reserve
    losses = []
    for _ in range(num_batches):
        x, y = get_batch(data, block_size, batch_size, generator, device)
        losses.append(model(x, y)[1].item())
    model.train(was_training)
    return sum(losses) / len(losses)


def trainable_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes held for training: trainable parameters, their gradients and the optimizer's state."""
    total = 0
    for p in model.parameters():
        if p.requires_grad:
            total += p.numel() * p.element_size()
            if p.grad is not None:
                total += p.grad.numel() * p.grad.element_size()
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.dim() > 0:  # exp_avg, exp_avg_sq (skip the scalar step)
                total += value.numel() * value.element_size()
    return total


def overfitting_note(history: list[dict], patience: int = 3, margin: float = 0.01) -> str:
    """A warning when validation loss has risen since its best for `patience` evaluations or more, ending more than
    `margin` (relative) above that best: more steps made the model worse on held-out text. "" otherwise."""
    losses = [point["val_loss"] for point in history]
    if len(losses) <= patience:
        return ""
    best = min(range(len(losses)), key=losses.__getitem__)
    if len(losses) - 1 - best >= patience and losses[-1] > losses[best] * (1 + margin):
        return (f"validation loss rose for the last {len(losses) - 1 - best} evaluations: best {losses[best]:.3f} at step "
                f"{history[best]['step']}, final {losses[-1]:.3f} (overfitting); train fewer --steps, or pass --keep-best to "
                "keep the best evaluated weights")
    return ""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether torch ran out of memory: on CPU a plain RuntimeError ("DefaultCPUAllocator: can't allocate memory"),
    on CUDA torch.OutOfMemoryError, on Apple's MPS a RuntimeError ("MPS backend out of memory")."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error)))


@contextmanager
def out_of_memory_as_one_line(description: str, batch_size: int, block_size: int, progress) -> Iterator[None]:
    """Running out of memory while training becomes one line that names the batch and the fix.

    The scripts' memory guard estimates before training; this catches what an estimate cannot see
    (finetune_hf.py's models, memory other programs took meanwhile).
    """
    try:
        yield
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        progress.close()
        raise UserError(f"{description}: out of memory with batches of {batch_size} windows of {block_size} tokens; "
                        "nothing was saved; lower --batch-size") from None


def train(model, train_data: torch.Tensor, val_data: torch.Tensor, config: TrainConfig, device, description="training",
          show_progress: bool = True, parameter_groups=None, draw_batch=None, keep_best: bool = False) -> TrainResult:
    """Train `model` in place on random windows of train_data; return the history and measurements.

    `parameter_groups`, if given, is a function model -> AdamW groups (called after the model moved to `device`).
    draw_batch(generator) -> (x, y), if given, replaces get_batch for the training batches (evaluation is unchanged),
    so a caller can train on another mixture of data with the same seeded generator.
    keep_best: at the end the model holds the weights of the evaluation with the lowest validation loss
    (early stopping without stopping: the whole history is still recorded).
    """
    model.to(device)
    model.train()
    step_model = wrap_for_data_parallel(model, device)  # under torchrun: DDP, which averages gradients; else model itself
    processes = world_size()
    optimizer = make_optimizer(model, config, parameter_groups(model) if parameter_groups else None)
    generator = torch.Generator().manual_seed(config.seed)  # batch order depends on the seed alone
    block_size = model.text_positions()  # block_size, less positions prefix or prompt tuning reserve
    result = TrainResult(trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad))
    best = {"loss": math.inf, "state": None}

    def evaluate(step: int) -> None:
        eval_start = time.perf_counter()
        train_loss = estimate_loss(model, train_data, config.batch_size, config.eval_batches, device)
        val_loss = estimate_loss(model, val_data, config.batch_size, config.eval_batches, device)
        result.history.append({"step": step, "tokens_seen": result.tokens_seen, "train_loss": train_loss, "val_loss": val_loss})
        if keep_best and val_loss < best["loss"]:
            best.update(loss=val_loss, step=step, state={k: v.detach().clone() for k, v in model.state_dict().items()})
        result.eval_seconds += time.perf_counter() - eval_start
        milliseconds = 1000 * result.train_seconds / max(1, step)
        progress.write(f"step {step:5d} | train loss {train_loss:.4f} | val loss {val_loss:.4f} | {milliseconds:.1f} ms/step")

    wall_start = time.perf_counter()
    progress = tqdm(range(config.steps), desc=description, disable=not show_progress, leave=False, dynamic_ncols=True)
    with out_of_memory_as_one_line(description, config.batch_size, block_size, progress):
        evaluate(0)
        for step in progress:
            step_start = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config) * group["lr_multiplier"]
            if draw_batch is None:
                x, y = get_batch(train_data, block_size, config.batch_size, generator, device)
            else:
                x, y = (tensor.to(device) for tensor in draw_batch(generator))
            if processes > 1:  # every process drew the same global batch; each trains on its own slice of it
                x, y = local_share(x, y)
            _, loss = step_model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
            optimizer.step()
            result.train_seconds += time.perf_counter() - step_start
            result.tokens_seen += x.numel() * processes
            loss_value = loss.item() if processes == 1 else mean_over_processes(loss.item())  # the global batch's loss
            progress.set_postfix(loss=f"{loss_value:.3f}")
            if not math.isfinite(loss_value):  # diverged: every later step would only spread NaN, and nothing may be saved
                progress.close()
                raise UserError(f"{description}: the loss became {loss_value} at step {step + 1} (training diverged); "
                                "nothing was saved; lower --lr")
            if (step + 1) % config.eval_interval == 0 or step + 1 == config.steps:
                evaluate(step + 1)
    progress.close()
    if not all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad):
        raise UserError(f"{description}: the weights became NaN or infinite (training diverged); nothing was saved; lower --lr")
    if keep_best and best["state"] is not None:
        model.load_state_dict(best["state"])
        result.best_step = best["step"]
        progress.write(f"{description}: kept the weights of step {best['step']} (lowest validation loss, {best['loss']:.4f})")
    elif note := overfitting_note(result.history):
        progress.write(f"warning: {description}: {note}")
    result.wall_seconds = time.perf_counter() - wall_start
    result.tokens_per_second = result.tokens_seen / max(result.train_seconds, 1e-9)
    result.trainable_state_bytes = trainable_state_bytes(model, optimizer)
    model.eval()
    return result
