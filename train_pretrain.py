"""Pretrain MiniGPT on the toy corpus.

    python train_pretrain.py            # about a minute on a 2-core CPU

Writes dist/pretrained/: config.json, model.pt, tokenizer.json (the model
directory every later script loads), history.json (losses and final figures)
and loss.png. Ends with a summary: losses, perplexity against a unigram
baseline, knowledge-probe accuracy, speed, and three greedy samples.
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

import contextlib
import time

from experiment.training.methods import USER_ERRORS
from experiment.training.pretraining import run_pretraining
from minigpt.config import GPTConfig
from minigpt.distributed import is_main_process, start_data_parallel, stop_data_parallel
from minigpt.plumbing.errors import run_cli
from minigpt.plumbing.flags import (ArgumentParser, add_common_flags, batch_size_flag, learning_rate, positive_int,
                                   probability, steps_flag)
from minigpt.plumbing.output_lock import output_lock
from minigpt.training import TrainConfig

SAMPLE_PROMPTS = ["the capital of france is", "the cow", "in the morning"]


def parse_args():
    defaults, model_defaults = TrainConfig(), GPTConfig()
    parser = ArgumentParser(description="Pretrain MiniGPT on a word-level toy corpus.")
    parser.add_argument("--corpus", default="data/pretrain.txt", help="UTF-8 text, documents separated by blank lines")
    parser.add_argument("--probes", default=None, help="knowledge probes: JSON list of {prompt, answer} (default: <corpus>_probes.json "
                        "beside the corpus, data/pretrain_probes.json for the default; none for a corpus without one)")
    parser.add_argument("--out", default="dist/pretrained", help="model directory to write")
    parser.add_argument("--steps", type=steps_flag, default=defaults.steps, help="optimisation steps")
    parser.add_argument("--batch-size", type=batch_size_flag, default=defaults.batch_size, help="windows per step")
    parser.add_argument("--lr", type=learning_rate, default=defaults.lr, help="peak learning rate (AdamW)")
    parser.add_argument("--eval-interval", type=positive_int, default=defaults.eval_interval, help="steps between evaluations")
    parser.add_argument("--keep-best", action="store_true", help="save the evaluated weights with the lowest validation loss, "
                        "not the last ones (for a small corpus that overfits)")
    parser.add_argument("--block-size", type=positive_int, default=model_defaults.block_size, help="context length in tokens")
    parser.add_argument("--n-layer", type=positive_int, default=model_defaults.n_layer, help="transformer blocks")
    parser.add_argument("--n-head", type=positive_int, default=model_defaults.n_head, help="attention heads")
    parser.add_argument("--n-embd", type=positive_int, default=model_defaults.n_embd, help="model width")
    parser.add_argument("--dropout", type=probability, default=model_defaults.dropout, help="dropout probability")
    parser.add_argument("--min-count", type=positive_int, default=1, help="leave out words seen fewer times; they read as <unk>")
    parser.add_argument("--max-vocab", type=positive_int, default=None, help="keep at most this many tokens, the most frequent (default: all)")
    parser.add_argument("--prompt", nargs="+", default=SAMPLE_PROMPTS, help="prompt to sample from (one or more, each in quotes)")
    add_common_flags(parser, seed=defaults.seed)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start_data_parallel(args)  # under torchrun: one process per CPU group or GPU (minigpt/distributed.py); else nothing
    try:
        run_and_report(args)
    finally:
        stop_data_parallel()


def run_and_report(args) -> None:
    start = time.perf_counter()
    # a second run on the same --out is refused, never silently overwritten (rank 0 alone writes)
    with output_lock(args.out) if is_main_process() else contextlib.nullcontext():
        summary = run_pretraining(args)
    if not is_main_process():
        return
    probes = summary["probes"]
    print(f"\nsaved {summary['out']}/: config.json, model.pt, tokenizer.json, history.json, loss.png")
    print(f"final loss          train {summary['train_loss']:.3f} | validation {summary['val_loss']:.3f}")
    print(f"validation perplexity {summary['val_perplexity']:.2f}  (unigram baseline: {summary['unigram_val_perplexity']:.1f})")
    if summary["probe_accuracy"] is None:
        print("probe accuracy      skipped (no probe file; pass --probes)")
    else:
        print(f"probe accuracy      {summary['probe_accuracy']:.0%} ({sum(p['correct'] for p in probes)}/{len(probes)} knowledge probes)")
    print(f"speed               {summary['tokens_per_second']:,.0f} tokens/s training | wall time {time.perf_counter() - start:.1f} s")
    print(f"evaluation          {summary['eval_seconds']:.1f} s in {summary['evaluations']} evaluations, "
          f"{summary['eval_seconds'] / max(summary['wall_seconds'], 1e-9):.0%} of the training loop's wall time "
          f"(every {summary['eval_interval']} steps; --eval-interval sets how often)")
    if summary["val_perplexity"] > summary["unigram_val_perplexity"]:
        print(f"warning: validation perplexity {summary['val_perplexity']:.1f} is worse than the unigram baseline's "
              f"{summary['unigram_val_perplexity']:.1f} (word frequencies alone predict better): the model overfits or is "
              "undertrained; try fewer --steps, --keep-best or a longer corpus")
    if summary["unknown_prompt_note"]:
        print(summary["unknown_prompt_note"])
    print("samples (greedy):")
    for sample in summary["sample_texts"]:
        print(f"  {sample}")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
