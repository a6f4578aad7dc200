"""Pretraining: a word-level tokenizer built from the corpus, then MiniGPT trained from scratch.

`run_pretraining(args)` is what `train_pretrain.py` calls: it reads the corpus
and probes, builds the tokenizer and the model, trains with the shared loop,
measures the result (exact losses, perplexity against a unigram baseline,
knowledge probes, greedy samples) and saves the model directory with its
history and loss plot.
"""

import json
import math

import torch

from experiment.training.data import corpus_record, default_probes
from experiment.plots import plot_loss_curves
from minigpt.plumbing.atomic_writes import ensure_writable_dir, new_run_id, refuse_foreign_directory
from minigpt.checkpoint import save_model_dir
from minigpt.config import GPTConfig
from minigpt.data import make_splits, read_corpus
from minigpt.device import choose_device
from minigpt.distributed import is_main_process
from minigpt.evaluation import check_probe_answers, complete, load_probes, note_unknown_prompt_words, probe_accuracy, stream_loss, unigram_perplexity
from minigpt.plumbing.flags import apply_threads
from minigpt.model import MiniGPT
from minigpt.tokenizer import WordTokenizer
from minigpt.training import TrainConfig, train

MODEL_DIR_FILES = {"config.json", "model.pt", "tokenizer.json", "history.json", "loss.png", "run.json"}


def run_pretraining(args) -> dict:
    """Train and save; return the summary (also written to history.json) plus the output path and a prompt note."""
    apply_threads(getattr(args, "threads", None))
    device = choose_device(args.device)
    text = read_corpus(args.corpus)
    probes_file, probes_note = default_probes(args.corpus, args.probes, "--probes")
    probes = load_probes(probes_file) if probes_file else []
    if is_main_process():  # under torchrun only rank 0 writes
        ensure_writable_dir(args.out)  # fail now, not after a minute of training
    refuse_foreign_directory(args.out, MODEL_DIR_FILES)

    tokenizer = WordTokenizer.from_corpus(text, getattr(args, "min_count", 1), getattr(args, "max_vocab", None))
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
        n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout,
    ).validate(training=True)
    config.check_memory(training=True, batch_size=args.batch_size)  # the activations too: --batch-size 2000000 is one line
    splits = make_splits(text, tokenizer, config.block_size, source=args.corpus)
    check_probe_answers(probes, tokenizer, probes_file, args.corpus)
    if probes_note:
        print(probes_note)
    torch.manual_seed(args.seed)
    model = MiniGPT(config)
    print(f"corpus: {len(splits.train_documents)} training and {len(splits.val_documents)} validation documents, "
          f"{len(splits.train):,} + {len(splits.val):,} tokens, vocabulary {tokenizer.vocab_size:,} words")
    print(f"model: {model.num_parameters():,} parameters ({config.n_layer} layers, {config.n_head} heads, "
          f"{config.n_embd} wide, context {config.block_size}) on {device}")

    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               warmup_steps=min(TrainConfig.warmup_steps, max(1, args.steps // 10)),
                               eval_interval=args.eval_interval, seed=args.seed)
    result = train(model, splits.train, splits.val, train_config, device, "pretraining", not args.no_progress,
                   keep_best=getattr(args, "keep_best", False))

    # Final figures: exact losses over the whole streams, not the sampled estimates.
    train_loss = stream_loss(model, splits.train, device)
    val_loss = stream_loss(model, splits.val, device)
    baseline = unigram_perplexity(splits.train, splits.val, tokenizer.vocab_size)
    accuracy, probe_results = probe_accuracy(model, tokenizer, probes, device) if probes else (None, [])
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
    run_info = {"run_id": new_run_id(), "written_by": "train_pretrain.py", "corpus": corpus_record(args.corpus)}
    out = args.out
    if is_main_process():  # under torchrun only rank 0 writes
        out = save_model_dir(args.out, model.cpu(), tokenizer, run_info=run_info, extra_files={
            "history.json": lambda path: path.write_text(history_json, encoding="utf-8"),
            "loss.png": lambda path: plot_loss_curves({"pretraining": result.history}, path, "MiniGPT pretraining loss"),
        })

    return {**summary, "out": out, "unknown_prompt_note": unknown_note, "sample_texts": samples,
            "eval_interval": train_config.eval_interval, "evaluations": len(result.history)}
