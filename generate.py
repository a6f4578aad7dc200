"""Talk to the base model, any number of LoRA adapters on it, their mixes, or merged models.

    python generate.py                  # the base and every adapter dist/finetuning_results records
    python generate.py --prompt "the capital of france is"
    python generate.py --adapter cooking=dist/finetuning_results/lora_adapter \
                       --adapter sport=dist/finetuning_results/adapters/sport --prompt "risotto is made with"
    python generate.py --adapter cooking=... --adapter sport=... --mix cooking=0.5,sport=0.5 --interactive

Prints every model's continuation of every prompt, side by side. Greedy by
default; --temperature above 0 samples (with --top-k and --seed). Generation
uses a key/value cache (--no-cache turns it off). In --interactive mode type
prompts, and :use NAME, :none (the base), :mix NAME=W,NAME=W, :list or :quit.
"""

import os
import signal
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep instead of spinning, which
# keeps 2 threads fast on a busy machine and changes no result (docs/threads.md)

# Ctrl-C while torch is still loading: one line, not a KeyboardInterrupt traceback (run_cli takes over once main starts).
# os._exit, not sys.exit: a SystemExit raised inside an import can be swallowed; nothing is written yet, so nothing to clean up.
# (A KeyboardInterrupt inside numpy's or torch's imports can be swallowed too, the run going on, or leave numpy half-made.)
signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                         os._exit(130)))

import argparse

from experiment.serving.generation import run_generation
from experiment.training.methods import USER_ERRORS
from minigpt.plumbing.errors import run_cli
from minigpt.plumbing.flags import ArgumentParser, add_common_flags, positive_int, whole_number_up_to

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0
MAX_NEW_TOKENS = 10_000
PROMPTS = ["risotto is made with", "in tennis you hit the ball with a", "the capital of france is"]


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value == 0 or MIN_TEMPERATURE <= value <= MAX_TEMPERATURE):
        # dividing the logits by a tiny temperature overflows them to inf, and softmax(inf - inf) is NaN
        raise argparse.ArgumentTypeError(f"must be 0 (greedy) or from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}, got {text!r}")
    return value


def parse_args():
    parser = ArgumentParser(description="Generate text with a base MiniGPT, named LoRA adapters, their mixes, or merged models.")
    parser.add_argument("--pretrained", default="dist/pretrained", help="the base model directory")
    parser.add_argument("--results", default="dist/finetuning_results", help="with no --adapter or --merged: serve every adapter "
                        "these fine-tuning results record that fits the base (lora_adapter/ and adapters/NAME/)")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR", help="an adapter directory to load under NAME "
                        "(repeatable; replaces the adapters from --results)")
    parser.add_argument("--merged", action="append", default=[], metavar="NAME=DIR", help="a (merged) model directory to load under NAME (repeatable)")
    parser.add_argument("--mix", action="append", default=[], metavar="NAME=W,NAME=W", help="also show this weighted mix of adapters (repeatable)")
    parser.add_argument("--prompt", nargs="+", default=None, help="one or more prompts, each in quotes (default: "
                        f"{', '.join(repr(p) for p in PROMPTS)}, or when the base and the loaded adapters lack a word of them, the "
                        "opening words of the validation text of the corpus the base was pretrained on)")
    parser.add_argument("--max-new-tokens", type=whole_number_up_to(MAX_NEW_TOKENS, "a bound on the work asked for"), default=20, help="tokens generated per prompt (stops early at end of text)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 is greedy decoding; above 0 samples")
    parser.add_argument("--top-k", type=positive_int, default=None, help="sample only from the k most likely tokens (default: all)")
    parser.add_argument("--no-cache", action="store_true", help="re-read the whole context for every token instead of using the key/value cache")
    parser.add_argument("--interactive", action="store_true", help="type prompts and :commands instead of --prompt")
    add_common_flags(parser, seed=1337)
    return parser.parse_args()


def main() -> None:
    run_generation(parse_args(), PROMPTS)


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
