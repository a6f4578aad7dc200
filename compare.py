"""Compare the pretrained base and the three fine-tuning methods, measured from the saved artifacts.

    python compare.py            # after train_pretrain.py and train_finetune.py; under half a minute

Everything is loaded from disk: the base, full_finetune/, layer_freezing/,
the LoRA adapter applied onto the base, and lora_merged/. Every model is
evaluated on the same held-out data. Writes comparison.md, comparison.json and
the plots forgetting_vs_learning.png, storage.png and inference_latency.png
(plus parameter_counts.png and loss_curves.png if missing) to the results directory.
"""

import os
import signal
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep instead of spinning, which
# keeps 2 threads fast on a busy machine and changes no result (docs/threads.md)

# Ctrl-C while torch is still loading: one line, not a KeyboardInterrupt traceback (run_cli takes over once main starts).
# os._exit, not sys.exit: a SystemExit raised inside an import can be swallowed; nothing is written yet, so nothing to clean up.
signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                         os._exit(130)))

import time
from pathlib import Path

from experiment.comparison.side_by_side import DEFAULT_PROMPTS, run_comparison
from experiment.training.data import add_finetune_data_flags
from experiment.training.methods import USER_ERRORS
from experiment.comparison.report import print_table
from minigpt.plumbing.errors import output_argument, run_cli
from minigpt.plumbing.flags import ArgumentParser, add_common_flags, whole_number_up_to
from minigpt.plumbing.output_lock import output_lock

MAX_LATENCY_TOKENS, MAX_LATENCY_REPEATS = 4096, 1000


def parse_args():
    parser = ArgumentParser(description="Measure and compare full fine-tuning, layer freezing and LoRA from saved artifacts.")
    parser.add_argument("--pretrained", default="dist/pretrained", help="the base model directory")
    parser.add_argument("--results", default="dist/finetuning_results", help="directory written by train_finetune.py (outputs go here too)")
    add_finetune_data_flags(parser, data_default=None)
    parser.add_argument("--prompt", nargs="+", default=None, help="prompts for side-by-side generations, each in quotes (default: "
                        f"{', '.join(repr(p) for p in DEFAULT_PROMPTS)}, or for a corpus without their words, the opening words "
                        "of its own validation text)")
    parser.add_argument("--latency-tokens", type=whole_number_up_to(MAX_LATENCY_TOKENS, "a bound on the work asked for"), default=32, help="tokens generated per timed run")
    parser.add_argument("--latency-repeats", type=whole_number_up_to(MAX_LATENCY_REPEATS, "a bound on the work asked for"), default=15, help="timed runs per model (the median is reported)")
    add_common_flags(parser, seed=1337)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    # it writes into the folder it reads (not while train_finetune.py swaps it): another folder must hold the models too
    with output_argument("--results", "copy the results folder somewhere writable and pass that as --results"), \
            output_lock(args.results, replaced_whole=False):
        comparison = run_comparison(args)
    print_table(comparison)
    print(f"\nwrote {Path(args.results)}/comparison.md, comparison.json and 5 plots in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
