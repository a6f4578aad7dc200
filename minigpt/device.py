"""Pick the compute device: CUDA, then Apple MPS, then CPU, unless the user says.

Nothing here touches CUDA at import time, so the package imports on any machine.
"""

import re

import torch

from minigpt.plumbing.errors import UserError


def choose_device(requested: str = "auto") -> torch.device:
    """Return the requested device, or the best available one for "auto"."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", requested)
    if match:
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested} was asked for but CUDA is not available here; use --device cpu or auto")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
        return torch.device("cuda", index)
    if requested == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UserError("--device mps was asked for but Apple MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    raise UserError(f"unknown --device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
