"""Fine-tune a Hugging Face causal language model (SmolLM, Llama, ...) with this project's lora/.

    python finetune_hf.py --model path/to/SmolLM-135M --text data/cooking.txt --threads 1
    python finetune_hf.py --model HuggingFaceTB/SmolLM-135M      # from your Hugging Face cache
    python finetune_hf.py --model HuggingFaceTB/SmolLM-135M --allow-download

The model and its own tokenizer come from a directory or the local Hugging
Face cache; nothing is downloaded unless --allow-download is given. Writes
OUT/adapter/ (PEFT's layout: PeftModel.from_pretrained loads it), OUT/merged/
(save_pretrained: a plain model with the update folded in, and its tokenizer)
and OUT/metrics.json. See docs/real_model.md.
"""

import os
import signal
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep instead of spinning, which
# keeps 2 threads fast on a busy machine and changes no result (docs/threads.md)

# Ctrl-C while torch is still loading: one line, not a KeyboardInterrupt traceback (run_cli takes over once main starts).
signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                         os._exit(130)))

import time

from experiment.real_model.hf_finetuning import DTYPES, run_hf_finetuning
from experiment.real_model.hf_model import first_line
from experiment.training.methods import USER_ERRORS
from lora.config import DEFAULT_TARGETS, LoRAConfig
from minigpt.plumbing.errors import UserError, run_cli
from minigpt.plumbing.flags import (ArgumentParser, add_common_flags, batch_size_flag, eval_batches_flag,
                                   learning_rate, lora_alpha, positive_int, probability, steps_flag)
from minigpt.plumbing.output_lock import output_lock
from minigpt.training import is_out_of_memory


def comma_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_args():
    parser = ArgumentParser(description="LoRA fine-tuning of a Hugging Face causal LM with this project's lora/, saved in PEFT's format.")
    parser.add_argument("--model", required=True, help="a model directory (config.json, weights, tokenizer) or a Hub name in your cache")
    parser.add_argument("--allow-download", action="store_true", help="let transformers download --model if it is not in the cache")
    parser.add_argument("--text", default="data/cooking.txt", help="UTF-8 text to fine-tune on, documents separated by blank lines")
    parser.add_argument("--out", default="dist/hf_finetune", help="output directory: adapter/, merged/, metrics.json")
    parser.add_argument("--target-modules", type=comma_names, default=",".join(DEFAULT_TARGETS),
                        help="comma-separated names of the linear layers LoRA adapts (Llama: q_proj,k_proj,v_proj,o_proj,"
                        "gate_proj,up_proj,down_proj)")
    parser.add_argument("--rank", type=positive_int, default=LoRAConfig.r, help="LoRA rank r")
    parser.add_argument("--alpha", type=lora_alpha, default=LoRAConfig.lora_alpha, help="LoRA alpha: the update is scaled by alpha/r")
    parser.add_argument("--dropout", type=probability, default=LoRAConfig.lora_dropout, help="dropout on the LoRA branch's input")
    parser.add_argument("--use-rslora", action="store_true", help="rsLoRA: scale the update by alpha/sqrt(r)")
    parser.add_argument("--use-dora", action="store_true", help="DoRA: a trainable magnitude per output feature")
    parser.add_argument("--steps", type=steps_flag, default=100, help="optimisation steps")
    parser.add_argument("--batch-size", type=batch_size_flag, default=8, help="windows per step")
    parser.add_argument("--block-size", type=positive_int, default=128, help="tokens per window (capped at the model's context)")
    parser.add_argument("--lr", type=learning_rate, default=5e-4, help="peak learning rate (AdamW, warmup then cosine)")
    parser.add_argument("--eval-interval", type=positive_int, default=25, help="steps between loss estimates")
    parser.add_argument("--eval-batches", type=eval_batches_flag, default=4, help="batches per loss estimate")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="weights' type; bfloat16 halves the memory (on CPU it is often slower)")
    add_common_flags(parser, seed=1337)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    with output_lock(args.out):  # like every writer: a second run on the same --out is refused, and the name checked, now
        try:
            summary = run_hf_finetuning(args)
        except RuntimeError as error:  # loading and the training loop say so themselves; this catches the rest
            if not is_out_of_memory(error):  # (moving the model to a device, measuring losses, merging)
                raise
            raise UserError(f"out of memory ({first_line(error)}); try --dtype bfloat16, a smaller "
                            "--batch-size or --block-size, or a smaller model") from None
    print(f"\nsaved under {summary['out']}/: adapter (PEFT format), merged (save_pretrained), metrics.json")
    header = f"{'method':<36} {'trainable params':>22} {'val loss':>9} {'time':>7}"
    print(header)
    print("-" * len(header))
    print(f"{'pretrained base':<36} {'-':>22} {summary['val_loss_before']:>9.3f} {'-':>7}")
    p = summary["parameters"]
    trainable = f"{p['trainable']:,} ({p['trainable_percent']:.2f}%)"
    print(f"{summary['label']:<36} {trainable:>22} {summary['val_loss_after']:>9.3f} {summary['train_seconds']:>6.1f}s")
    print(f"(validation loss on the held-out tenth of {args.text}, nats per token.) Total wall time {time.perf_counter() - start:.1f} s")
    print(f"merge check: max |logit(adapter on base) - logit(merged)| = {summary['merge_max_logit_gap']:.2e}")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
