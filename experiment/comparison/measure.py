"""Measurements for the comparison: bytes on disk and time per generated token."""

import statistics
import time
from pathlib import Path

import torch

from minigpt.plumbing.reading import load_tensor_file


def directory_bytes(path: str | Path) -> int:
    """Bytes of every file in a directory, as the file system reports them."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


def raw_tensor_bytes(path: str | Path) -> int:
    """Bytes of tensor data in the directory's .pt files; shared (tied) storage is counted once."""
    total = 0
    for file in sorted(Path(path).glob("*.pt")):
        state = load_tensor_file(file, "tensor")
        # Ours are dicts of tensors; a stray file may hold one tensor, a list, or no tensor at all.
        values = state.values() if isinstance(state, dict) else state if isinstance(state, (list, tuple)) else [state]
        seen = set()
        for value in values:
            if torch.is_tensor(value):
                storage = value.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
    return total


@torch.no_grad()
def milliseconds_per_token(models: dict, prompt_ids: list[int], new_tokens: int, repeats: int, device,
                           use_cache: bool = False) -> dict:
    """Greedy generation of `new_tokens` tokens at batch size 1, for each model.

    Every model gets one warm-up run, then the timed runs go round-robin, the
    starting model rotating each round, so that a slow moment of the machine
    (or being first after a switch) hurts every model alike.
    Returns {name: {median, min and max ms per token, ...}}.
    """
    idx = torch.tensor([prompt_ids], device=device)
    timings = {name: [] for name in models}
    for model in models.values():
        model.eval()
        model.generate(idx, new_tokens, temperature=0.0, use_cache=use_cache)  # warm-up: allocations, caches, lazy init
    names = list(models)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model = models[name]
            _synchronize(device)
            start = time.perf_counter()
            model.generate(idx, new_tokens, temperature=0.0, use_cache=use_cache)
            _synchronize(device)
            timings[name].append(1000 * (time.perf_counter() - start) / new_tokens)
    return {name: {"median_ms_per_token": statistics.median(t), "min_ms_per_token": min(t), "max_ms_per_token": max(t),
                   "repeats": repeats, "new_tokens": new_tokens, "prompt_tokens": len(prompt_ids), "batch_size": 1,
                   **({"key_value_cache": True} if use_cache else {})}
            for name, t in timings.items()}


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def comparison_row(trained: dict, measured: dict, before: dict) -> dict:
    """One row of the comparison: what metrics.json recorded of a training run, and what was measured now.

    `trained` is a method's (or a variant's) record in metrics.json, `measured` an
    EvaluationSuite.measure() of its model, `before` the same for the base.
    """
    return {
        "label": trained["label"],
        "trainable_parameters": trained["parameters"]["trainable"],
        "total_parameters": trained["parameters"]["total"],
        "trainable_percent": trained["parameters"]["trainable_percent"],
        "trainable_state_bytes": trained["trainable_state_bytes"],
        "train_seconds": trained["train_seconds"],
        "tokens_per_second": trained["tokens_per_second"],
        "lr": trained["lr"],
        **{key: value for key, value in measured.items() if not key.endswith("_results")},
        "forgetting_val_loss_increase": measured["pretrain_val_loss"] - before["pretrain_val_loss"],
        "forgetting_probe_accuracy_drop": None if measured["pretrain_probe_accuracy"] is None
        else before["pretrain_probe_accuracy"] - measured["pretrain_probe_accuracy"],
    }
