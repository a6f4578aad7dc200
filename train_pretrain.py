"""Pretrain MiniGPT on the toy corpus.

    python train_pretrain.py            # about a minute on a 2-core CPU

Writes dist/pretrained/: config.json, model.pt, tokenizer.json (the model
directory every later script loads), history.json (losses and final figures)
and loss.png. Ends with a summary: losses, perplexity against a unigram
baseline, knowledge-probe accuracy, speed, and three greedy samples.
"""

import json
import math
import time

import torch

from minigpt.checkpoint import refuse_foreign_directory, save_model_dir
from minigpt.cli import ArgumentParser, add_common_flags, positive_float, positive_int, probability
from minigpt.config import GPTConfig
from minigpt.data import make_splits, read_corpus
from minigpt.device import choose_device
from minigpt.errors import run_cli
from minigpt.evaluation import check_probe_answers, complete, load_probes, note_unknown_prompt_words, probe_accuracy, stream_loss, unigram_perplexity
from minigpt.files import ensure_writable_dir
from minigpt.model import MiniGPT
from minigpt.plots import plot_loss_curves
from minigpt.tokenizer import WordTokenizer
from minigpt.training import TrainConfig, train

SAMPLE_PROMPTS = ["the capital of france is", "the cow", "in the morning"]


def parse_args():
    defaults, model_defaults = TrainConfig(), GPTConfig()
    parser = ArgumentParser(description="Pretrain MiniGPT on a word-level toy corpus.")
    parser.add_argument("--corpus", default="data/pretrain.txt", help="UTF-8 text, documents separated by blank lines")
    parser.add_argument("--probes", default="data/pretrain_probes.json", help="knowledge probes: JSON list of {prompt, answer}")
    parser.add_argument("--out", default="dist/pretrained", help="model directory to write")
    parser.add_argument("--steps", type=positive_int, default=defaults.steps, help="optimisation steps")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="windows per step")
    parser.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak learning rate (AdamW)")
    parser.add_argument("--eval-interval", type=positive_int, default=defaults.eval_interval, help="steps between evaluations")
    parser.add_argument("--block-size", type=positive_int, default=model_defaults.block_size, help="context length in tokens")
    parser.add_argument("--n-layer", type=positive_int, default=model_defaults.n_layer, help="transformer blocks")
    parser.add_argument("--n-head", type=positive_int, default=model_defaults.n_head, help="attention heads")
    parser.add_argument("--n-embd", type=positive_int, default=model_defaults.n_embd, help="model width")
    parser.add_argument("--dropout", type=probability, default=model_defaults.dropout, help="dropout probability")
    parser.add_argument("--prompt", nargs="+", default=SAMPLE_PROMPTS, help="prompt to sample from (one or more, each in quotes)")
    add_common_flags(parser, seed=defaults.seed)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    device = choose_device(args.device)
    text = read_corpus(args.corpus)
    probes = load_probes(args.probes)
    ensure_writable_dir(args.out)  # fail now, not after a minute of training
    refuse_foreign_directory(args.out, {"config.json", "model.pt", "tokenizer.json", "history.json", "loss.png"})

    tokenizer = WordTokenizer.from_corpus(text)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
        n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout,
    ).validate()
    splits = make_splits(text, tokenizer, config.block_size, source=args.corpus)
    check_probe_answers(probes, tokenizer, args.probes)
    torch.manual_seed(args.seed)
    model = MiniGPT(config)
    print(f"corpus: {len(splits.train_documents)} training and {len(splits.val_documents)} validation documents, "
          f"{len(splits.train):,} + {len(splits.val):,} tokens, vocabulary {tokenizer.vocab_size:,} words")
    print(f"model: {model.num_parameters():,} parameters ({config.n_layer} layers, {config.n_head} heads, "
          f"{config.n_embd} wide, context {config.block_size}) on {device}")

    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               warmup_steps=min(TrainConfig.warmup_steps, max(1, args.steps // 10)),
                               eval_interval=args.eval_interval, seed=args.seed)
    result = train(model, splits.train, splits.val, train_config, device, "pretraining", not args.no_progress)

    # Final figures: exact losses over the whole streams, not the sampled estimates.
    train_loss = stream_loss(model, splits.train, device)
    val_loss = stream_loss(model, splits.val, device)
    baseline = unigram_perplexity(splits.train, splits.val, tokenizer.vocab_size)
    accuracy, probe_results = probe_accuracy(model, tokenizer, probes, device)
    prompts = args.prompt
    unknown_note = note_unknown_prompt_words(tokenizer, prompts)
    samples = [complete(model, tokenizer, prompt, 20, device) for prompt in prompts]
    summary = {
        "train_loss": train_loss, "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
        "unigram_val_perplexity": baseline, "probe_accuracy": accuracy, "probes": probe_results,
        "parameters": model.num_parameters(), **{k: v for k, v in result.to_dict().items() if k != "history"},
        "samples": dict(zip(prompts, samples)), "config": config.to_dict(), "train_config": vars(train_config),
    }
    history_json = json.dumps({"history": result.history, "summary": summary}, indent=2) + "\n"
    out = save_model_dir(args.out, model.cpu(), tokenizer, extra_files={
        "history.json": lambda path: path.write_text(history_json, encoding="utf-8"),
        "loss.png": lambda path: plot_loss_curves({"pretraining": result.history}, path, "MiniGPT pretraining loss"),
    })

    print(f"\nsaved {out}/: config.json, model.pt, tokenizer.json, history.json, loss.png")
    print(f"final loss          train {train_loss:.3f} | validation {val_loss:.3f}")
    print(f"validation perplexity {math.exp(val_loss):.2f}  (unigram baseline: {baseline:.1f})")
    print(f"probe accuracy      {accuracy:.0%} ({sum(r['correct'] for r in probe_results)}/{len(probe_results)} knowledge probes)")
    print(f"speed               {result.tokens_per_second:,.0f} tokens/s training | wall time {time.perf_counter() - start:.1f} s")
    if unknown_note:
        print(unknown_note)
    print("samples (greedy):")
    for sample in samples:
        print(f"  {sample}")


if __name__ == "__main__":
    run_cli(main)
