"""Fine-tune the pretrained MiniGPT on a new domain three ways and save every artifact.

    python train_finetune.py                 # all three methods, about a minute on a 2-core CPU
    python train_finetune.py --method lora --rank 8

Methods: full fine-tuning, layer freezing (top blocks only) and LoRA on the
attention projections. All three see the same data, steps, batch size and
seed. Writes under dist/finetuning_results/: full_finetune/, layer_freezing/,
lora_adapter/ (A/B tensors, new word rows, config, tokenizer), lora_merged/,
metrics.json, parameter_counts.png and loss_curves.png.

    python train_finetune.py --method others   # bottleneck adapters, prefix, prompt, BitFit, IA3 (docs/other_methods.md)

Each of those five saves other_methods/NAME/result/ (and merged/ for BitFit and IA3) beside the three.
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
from pathlib import Path

from experiment.training.data import add_finetune_data_flags
from experiment.training.finetuning import run_finetuning
from experiment.training.methods import METHODS, USER_ERRORS
from experiment.training.other_methods.catalog import OTHER_METHODS, add_other_method_flags
from experiment.comparison.report import percent
from lora.config import A_INITS, DEFAULT_TARGETS, QUANTIZE_CHOICES, LoRAConfig
from minigpt.distributed import is_main_process, start_data_parallel, stop_data_parallel
from minigpt.plumbing.errors import UserError, run_cli
from minigpt.plumbing.flags import (ArgumentParser, add_common_flags, batch_size_flag, learning_rate, lora_alpha,
                                   positive_float_up_to, positive_int, probability, steps_flag)
from minigpt.plumbing.output_lock import output_lock

DEFAULT_STEPS, DEFAULT_BATCH_SIZE, DEFAULT_SEED = 150, 32, 1337


def parse_args():
    parser = ArgumentParser(description="Fine-tune MiniGPT on a new domain: full, layer freezing and LoRA.")
    parser.add_argument("--method", choices=["full", "freeze", "lora", "all", "variants", *OTHER_METHODS, "others"], default="all",
                        help="which method(s) to run; variants: rsLoRA, LoRA+, DoRA and QLoRA, saved under variants/; "
                        "adapters (bottleneck adapters), prefix (prefix tuning), prompt (prompt tuning), bitfit, ia3, or others "
                        "(those five), saved under other_methods/ (docs/other_methods.md)")
    parser.add_argument("--pretrained", default="dist/pretrained", help="model directory written by train_pretrain.py")
    add_finetune_data_flags(parser)
    parser.add_argument("--out", default="dist/finetuning_results", help="results directory")
    parser.add_argument("--steps", type=steps_flag, default=DEFAULT_STEPS, help="optimisation steps per method")
    parser.add_argument("--batch-size", type=batch_size_flag, default=DEFAULT_BATCH_SIZE, help="windows per step")
    parser.add_argument("--lr", type=learning_rate, default=None,
                        help="peak learning rate for every method (default: per method, " +
                        ", ".join(f"{m.name} {m.lr:g}" for m in [*METHODS.values(), *OTHER_METHODS.values()]) + ")")
    parser.add_argument("--eval-interval", type=positive_int, default=25, help="steps between loss evaluations")
    parser.add_argument("--train-last-k", type=int, default=None, help="layer freezing: blocks trained from the top (default: half of them)")
    parser.add_argument("--rank", type=positive_int, default=LoRAConfig.r, help="LoRA rank r")
    parser.add_argument("--alpha", type=lora_alpha, default=LoRAConfig.lora_alpha,
                        help="LoRA alpha, fixed whatever the rank (as in the LoRA paper and PEFT): the update is scaled by alpha/r")
    parser.add_argument("--dropout", type=probability, default=LoRAConfig.lora_dropout, help="dropout on the LoRA branch's input")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated LoRA target layer names")
    parser.add_argument("--replay", type=probability, default=0.0,
                        help="share of each batch drawn from the pretraining corpus's training split, in [0, 1) (against forgetting)")
    parser.add_argument("--init", choices=A_INITS, default="kaiming", help="initialisation of LoRA's A matrix")
    add_variant_flags(parser)
    add_other_method_flags(parser)
    parser.add_argument("--adapter-name", default=None,
                        help="with --method lora: save the adapter as OUT/adapters/NAME/, with its merged model (merged/) and figures "
                        "(metrics.json) inside it, one directory swapped in at once, "
                        "leaving lora_adapter/, lora_merged/ and metrics.json alone (default: the cooking layout)")
    parser.add_argument("--keep-best", action="store_true", help="save each method's evaluated weights with the lowest "
                        "new-domain validation loss, not the last ones")
    add_common_flags(parser, seed=DEFAULT_SEED)
    return parser.parse_args()


def add_variant_flags(parser) -> None:
    variants = parser.add_argument_group("LoRA variants (PEFT's names; see docs/variants.md)")
    variants.add_argument("--use-rslora", action="store_true", help="rsLoRA: scale the update by alpha/sqrt(r) instead of alpha/r")
    variants.add_argument("--use-dora", action="store_true", help="DoRA: a trainable magnitude per output feature, LoRA on the direction")
    variants.add_argument("--loraplus-lr-ratio", type=positive_float_up_to(10_000, "B's rate, this times --lr, must stay a rate"),
                          default=None,
                          help="LoRA+: B's learning rate is this many times A's (the paper suggests 16); off if not given")
    variants.add_argument("--quantize-base", choices=QUANTIZE_CHOICES, default="none",
                          help="QLoRA: store the frozen base of the LoRA targets (or of all linear layers) as 4-bit NF4")
    variants.add_argument("--quant-block-size", type=positive_int, default=LoRAConfig.quant_block_size,
                          help="QLoRA: weights per absmax block")
    variants.add_argument("--no-double-quant", action="store_true", help="QLoRA: keep the block scales in float32")


def check_flag_combinations(args) -> None:
    """A flag the chosen method would ignore is an error, never silent."""
    lora_flags = {"--use-rslora": args.use_rslora, "--use-dora": args.use_dora,
                  "--loraplus-lr-ratio": args.loraplus_lr_ratio is not None, "--quantize-base": args.quantize_base != "none"}
    given = [flag for flag, on in lora_flags.items() if on]
    if given and args.method in ("full", "freeze", *OTHER_METHODS, "others"):
        raise UserError(f"{given[0]} changes LoRA only, but --method {args.method} trains no LoRA; use --method lora")
    if given and args.method == "variants":
        raise UserError(f"--method variants trains every variant one at a time; drop {given[0]}, or use --method lora {given[0]}")
    if args.quantize_base == "none" and args.method != "variants" and (args.no_double_quant or args.quant_block_size != LoRAConfig.quant_block_size):
        raise UserError("--quant-block-size and --no-double-quant apply to QLoRA only; add --quantize-base targets")


def main() -> None:
    args = parse_args()
    check_flag_combinations(args)
    start_data_parallel(args)  # under torchrun: one process per CPU group or GPU (minigpt/distributed.py); else nothing
    try:
        start = time.perf_counter()
        # two fine-tunes on one --out: the second is refused, no run's models silently dropped (rank 0 alone writes)
        with output_lock(args.out) if is_main_process() else contextlib.nullcontext():
            records, before, out = run_finetuning(args)
        if is_main_process():
            print_summary(records, before, out, time.perf_counter() - start)
    finally:
        stop_data_parallel()


def print_summary(records: dict, before: dict, out: Path, seconds: float) -> None:
    print(f"\nsaved under {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))
    header = f"{'method':<20} {'trainable params':>20} {'new val loss':>12} {'new probes':>10} {'old val loss':>12} {'time':>7}"
    print(header)
    print("-" * len(header))
    print(f"{'pretrained base':<20} {'-':>20} {before['finetune_val_loss']:>12.3f} {percent(before['finetune_probe_accuracy']):>10} "
          f"{before['pretrain_val_loss']:>12.3f} {'-':>7}")
    for record in records.values():
        p, after = record["parameters"], record["after"]
        trainable = f"{p['trainable']:,} ({p['trainable_percent']:.1f}%)"
        print(f"{record['label']:<20} {trainable:>20} {after['finetune_val_loss']:>12.3f} {percent(after['finetune_probe_accuracy']):>10} "
              f"{after['pretrain_val_loss']:>12.3f} {record['train_seconds']:>6.1f}s")
    print(f"(new = the fine-tuning domain, learning; old = the pretraining corpus, forgetting.) Total wall time {seconds:.1f} s")
    for record in records.values():
        if record["after"]["finetune_val_loss"] > before["finetune_val_loss"]:
            print(f"warning: {record['label']} made the new-domain validation loss worse than the base's "
                  f"({before['finetune_val_loss']:.3f} -> {record['after']['finetune_val_loss']:.3f}); "
                  "try another --lr or fewer --steps")
    evaluating, looping = sum(r["eval_seconds"] for r in records.values()), sum(r["wall_seconds"] for r in records.values())
    print(f"periodic evaluation {evaluating:.1f} s, {evaluating / max(looping, 1e-9):.0%} of the training loops' wall time "
          "(--eval-interval sets how often)")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
