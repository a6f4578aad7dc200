"""Grader side: what the judges share. Inputs drawn afresh each run, and raw results read with suspicion.

Everything here runs in the grading process, which never imports student
code. A raw result comes from the sandboxed worker, so it is untrusted data:
`matrix` and friends check its type and shape before any arithmetic and raise
Malformed otherwise, which fails the line.
"""

import math

import torch

from coursework.probes import Fail

TOLERANCE = 1e-5  # float32 forward passes against a float64 reference


class Malformed(Fail):
    """The worker's answer is not what the measurement returns: a crash mid-write, or a forgery."""


class Draw:
    """Random inputs from a generator the grader seeds per run, as lists ready for JSON."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape, std: float = 1.0) -> list:
        return (torch.randn(shape, generator=self.generator, dtype=torch.float64) * std).float().double().tolist()

    def integers(self, high: int, *shape) -> list:
        return torch.randint(high, shape, generator=self.generator).tolist()

    def seed(self) -> int:
        return int(torch.randint(1 << 30, (1,), generator=self.generator))

    def case(self, in_features: int, out_features: int, r: int, alpha: float, rows: int = 6, **extra) -> dict:
        """A base layer (W, bias), LoRA matrices A and B, an input x: everything a layer check feeds in."""
        return {"W": self.normal(out_features, in_features, std=in_features ** -0.5), "bias": self.normal(out_features),
                "r": r, "alpha": alpha, "A": self.normal(r, in_features, std=0.5), "B": self.normal(out_features, r, std=0.5),
                "x": self.normal(rows, in_features), **extra}


def matrix(raw: dict, key: str, shape=None) -> torch.Tensor:
    """raw[key] as a float64 tensor of the given shape (None: any), or Malformed."""
    value = raw.get(key) if isinstance(raw, dict) else None
    try:
        result = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise Malformed(f"the worker's result for {key!r} is not a tensor") from None
    if shape is not None and tuple(result.shape) != tuple(shape):
        raise Malformed(f"the worker's result for {key!r} has shape {tuple(result.shape)}, expected {tuple(shape)}")
    return result


def flag(raw: dict, key: str) -> bool:
    value = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(value, bool):
        raise Malformed(f"the worker's result for {key!r} is not true or false")
    return value


def names(raw: dict, key: str) -> list:
    value = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Malformed(f"the worker's result for {key!r} is not a list of names")
    return value


def number(raw: dict, key: str) -> float:
    value = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Malformed(f"the worker's result for {key!r} is not a number")
    return float(value)


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    error = (got.double() - want.double()).abs().max().item()
    return math.inf if math.isnan(error) else error


def fitted_factor(got: torch.Tensor, basis: torch.Tensor) -> float:
    """c minimising |got - c basis|; nan when basis is zero."""
    denominator = (basis * basis).sum().item()
    return (got * basis).sum().item() / denominator if denominator else math.nan
