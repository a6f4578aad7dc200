"""Measurements for the comparison: bytes on disk and time per generated token."""

import statistics
import time
from pathlib import Path

import torch

from minigpt.io import load_tensor_file


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
def milliseconds_per_token(models: dict, prompt_ids: list[int], new_tokens: int, repeats: int, device) -> dict:
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
        model.generate(idx, new_tokens, temperature=0.0)  # warm-up: allocations, caches, lazy init
    names = list(models)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model = models[name]
            _synchronize(device)
            start = time.perf_counter()
            model.generate(idx, new_tokens, temperature=0.0)
            _synchronize(device)
            timings[name].append(1000 * (time.perf_counter() - start) / new_tokens)
    return {name: {"median_ms_per_token": statistics.median(t), "min_ms_per_token": min(t), "max_ms_per_token": max(t),
                   "repeats": repeats, "new_tokens": new_tokens, "prompt_tokens": len(prompt_ids), "batch_size": 1}
            for name, t in timings.items()}


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
