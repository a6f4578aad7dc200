"""Fine-tune the pretrained MiniGPT on a new domain three ways and save every artifact.

    python train_finetune.py                 # all three methods, about a minute on a 2-core CPU
    python train_finetune.py --method lora --rank 8

Methods: full fine-tuning, layer freezing (top blocks only) and LoRA on the
attention projections. All three see the same data, steps, batch size and
seed. Writes under dist/finetuning_results/: full_finetune/, layer_freezing/,
lora_adapter/ (A/B tensors, new word rows, config, tokenizer), lora_merged/,
metrics.json, parameter_counts.png and loss_curves.png.
"""

import time
from pathlib import Path

from experiment.data import add_finetune_data_flags
from experiment.finetuning import run_finetuning
from experiment.methods import METHODS, USER_ERRORS
from lora.config import A_INITS, DEFAULT_TARGETS, LoRAConfig
from minigpt.io import ArgumentParser, add_common_flags, positive_float, positive_int, probability, run_cli

DEFAULT_STEPS, DEFAULT_BATCH_SIZE, DEFAULT_SEED = 150, 32, 1337


def parse_args():
    parser = ArgumentParser(description="Fine-tune MiniGPT on a new domain: full, layer freezing and LoRA.")
    parser.add_argument("--method", choices=["full", "freeze", "lora", "all"], default="all", help="which method(s) to run")
    parser.add_argument("--pretrained", default="dist/pretrained", help="model directory written by train_pretrain.py")
    add_finetune_data_flags(parser)
    parser.add_argument("--out", default="dist/finetuning_results", help="results directory")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="optimisation steps per method")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="windows per step")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="peak learning rate for every method (default: per method, " +
                        ", ".join(f"{m.name} {m.lr:g}" for m in METHODS.values()) + ")")
    parser.add_argument("--eval-interval", type=positive_int, default=25, help="steps between loss evaluations")
    parser.add_argument("--train-last-k", type=int, default=None, help="layer freezing: blocks trained from the top (default: half of them)")
    parser.add_argument("--rank", type=positive_int, default=LoRAConfig.r, help="LoRA rank r")
    parser.add_argument("--alpha", type=positive_float, default=LoRAConfig.lora_alpha,
                        help="LoRA alpha, fixed whatever the rank (as in the LoRA paper and PEFT): the update is scaled by alpha/r")
    parser.add_argument("--dropout", type=probability, default=LoRAConfig.lora_dropout, help="dropout on the LoRA branch's input")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated LoRA target layer names")
    parser.add_argument("--replay", type=probability, default=0.0,
                        help="share of each batch drawn from the pretraining corpus's training split, in [0, 1) (against forgetting)")
    parser.add_argument("--init", choices=A_INITS, default="kaiming", help="initialisation of LoRA's A matrix")
    add_common_flags(parser, seed=DEFAULT_SEED)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    records, before, out = run_finetuning(args)
    print_summary(records, before, out, time.perf_counter() - start)


def print_summary(records: dict, before: dict, out: Path, seconds: float) -> None:
    print(f"\nsaved under {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))
    header = f"{'method':<20} {'trainable params':>20} {'new val loss':>12} {'new probes':>10} {'old val loss':>12} {'time':>7}"
    print(header)
    print("-" * len(header))
    print(f"{'pretrained base':<20} {'-':>20} {before['finetune_val_loss']:>12.3f} {before['finetune_probe_accuracy']:>10.0%} "
          f"{before['pretrain_val_loss']:>12.3f} {'-':>7}")
    for record in records.values():
        p, after = record["parameters"], record["after"]
        trainable = f"{p['trainable']:,} ({p['trainable_percent']:.1f}%)"
        print(f"{record['label']:<20} {trainable:>20} {after['finetune_val_loss']:>12.3f} {after['finetune_probe_accuracy']:>10.0%} "
              f"{after['pretrain_val_loss']:>12.3f} {record['train_seconds']:>6.1f}s")
    print(f"(new = the fine-tuning domain, learning; old = the pretraining corpus, forgetting.) Total wall time {seconds:.1f} s")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
