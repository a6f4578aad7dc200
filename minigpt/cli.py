"""Command-line helpers shared by the scripts: argument types and a parser whose
errors are one line (plus exit status 2), like every other user mistake here."""

import argparse
import math
import sys

from minigpt.errors import EXIT_USER_ERROR


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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def add_finetune_data_flags(parser: argparse.ArgumentParser) -> None:
    """The new domain (learning) and the pretraining yardsticks (forgetting), shared by fine-tuning and comparison."""
    parser.add_argument("--data", default="data/cooking.txt", help="new-domain corpus (UTF-8, documents separated by blank lines)")
    parser.add_argument("--probes", default="data/cooking_probes.json", help="new-domain knowledge probes")
    parser.add_argument("--pretrain-corpus", default="data/pretrain.txt", help="pretraining corpus: its validation split measures forgetting")
    parser.add_argument("--pretrain-probes", default="data/pretrain_probes.json", help="pretraining probes: measure forgetting")


def add_common_flags(parser: argparse.ArgumentParser, seed: int) -> None:
    parser.add_argument("--seed", type=seed_value, default=seed, help="random seed: the same seed on the same machine gives the same losses")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (for logs and tests)")
