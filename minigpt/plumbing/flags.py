"""Command-line flags: argparse with defaults in --help and one-line errors, and checked number types.

Every script builds its parser from these, so a wrong flag value ends in one line
(exit status 2) that says what was expected. Nothing here is about GPTs or LoRA.
"""

import argparse
import math
import sys
from typing import Callable

import torch

from minigpt.plumbing.errors import EXIT_USER_ERROR


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show "(default: ...)" after each flag, except where the default is None: those flags say in words what happens."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults shown in --help and one-line errors."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _at_most(parse: Callable[[str], float], limit: float, why: str) -> Callable[[str], float]:
    """An argparse type: what `parse` accepts, up to `limit`; `why` says what the limit stands for."""
    def bounded(text: str):
        value = parse(text)
        if value > limit:
            shown = f"{limit:,}" if isinstance(limit, int) else f"{limit:,g}"
            raise argparse.ArgumentTypeError(f"must be at most {shown} ({why}), got {text}")
        return value
    return bounded


def whole_number_up_to(limit: int, why: str) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to `limit`; `why` says what the limit protects (work the user asked for)."""
    return _at_most(positive_int, limit, why)


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


# Bounds on the work a training flag can ask for. Past them a run would not end in any reasonable time, or a number
# overflows inside torch (a learning rate of 1e300 in float32) or tqdm (10**23 steps): a traceback, not one line.
MAX_STEPS = 10_000_000
MAX_BATCH_SIZE = 1_000_000
MAX_EVAL_BATCHES = 10_000
MAX_LEARNING_RATE = 1e6  # a rate of 1000 already diverges, which the training loop reports in one line
WORK_BOUND = "a bound on the work asked for"
steps_flag = whole_number_up_to(MAX_STEPS, WORK_BOUND)
batch_size_flag = whole_number_up_to(MAX_BATCH_SIZE, WORK_BOUND)
eval_batches_flag = whole_number_up_to(MAX_EVAL_BATCHES, WORK_BOUND)


def positive_float_up_to(limit: float, why: str) -> Callable[[str], float]:
    """An argparse type: a number above 0 and at most `limit`; `why` says what the limit stands for."""
    return _at_most(positive_float, limit, why)


learning_rate = positive_float_up_to(MAX_LEARNING_RATE, "AdamW moves each weight by about the learning rate per step; "
                                                        "far smaller rates already diverge")
MAX_LORA_ALPHA = 100_000.0  # alpha / r scales LoRA's update; common values are 8 to 512
lora_alpha = positive_float_up_to(MAX_LORA_ALPHA, "alpha / r multiplies LoRA's update; far smaller alphas already diverge")


def probability(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def seed_value(text: str) -> int:
    value = _number(text, int)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


MAX_THREADS = 256


def apply_threads(threads: int | None) -> None:
    """--threads: how many CPU threads torch uses (None keeps torch's own choice: one per core, or OMP_NUM_THREADS).

    The scripts also set OMP_WAIT_POLICY=PASSIVE before torch loads (docs/threads.md has the measurements):
    on a machine shared with other busy processes, threads that spin while they wait made each step six to
    eight times slower than one thread (medians, one shared machine); sleeping threads do not, and the results are the same bits."""
    if threads is not None:
        torch.set_num_threads(threads)


def add_common_flags(parser: argparse.ArgumentParser, seed: int, threads: int | None = None) -> None:
    parser.add_argument("--seed", type=seed_value, default=seed, help="random seed: the same seed on the same machine gives the same losses")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (for logs and tests)")
    chosen = "" if threads is not None else f" (default: torch's choice, {torch.get_num_threads()} here)"
    parser.add_argument("--threads", type=whole_number_up_to(MAX_THREADS, "more threads than cores only adds waiting"), default=threads,
                        help=f"CPU threads for torch{chosen}; idle threads sleep (OMP_WAIT_POLICY=PASSIVE), so the default "
                        "holds up on a busy machine (docs/threads.md)")
