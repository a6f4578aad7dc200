"""Fine-tune the pretrained MiniGPT on a new domain three ways and save every artifact.

    python train_finetune.py                 # all three methods, about a minute on a 2-core CPU
    python train_finetune.py --method lora --rank 8

Methods: full fine-tuning, layer freezing (top blocks only) and LoRA on the
attention projections. All three see the same data, steps, batch size and
seed. Writes under dist/finetuning_results/: full_finetune/, layer_freezing/,
lora_adapter/ (A/B tensors, new word rows, config, tokenizer), lora_merged/,
metrics.json, parameter_counts.png and loss_curves.png.
"""

import copy
import json
import time
from pathlib import Path


from lora.adapter import save_adapter
from lora.apply import apply_lora
from lora.config import A_INITS, DEFAULT_TARGETS, LoRAConfig
from lora.merge import merge_lora
from lora.parameters import count_parameters, lora_matrix_savings, parameter_breakdown
from minigpt.checkpoint import load_model_dir, model_fingerprint, save_model_dir
from minigpt.cli import ArgumentParser, add_common_flags, add_finetune_data_flags, positive_float, positive_int, probability
from minigpt.device import choose_device
from minigpt.errors import run_cli
from minigpt.files import atomic_write_text, ensure_writable_dir
from minigpt.finetune_data import prepare_finetune_data
from minigpt.finetuning import METHODS, check_train_last_k, grow_vocabulary, lora_label, prepare_full, prepare_layer_freezing, prepare_lora
from minigpt.new_token_rows import join_new_token_rows
from minigpt.plots import plot_loss_curves, plot_parameter_counts
from minigpt.training import TrainConfig, train

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
    parser.add_argument("--alpha", type=positive_float, default=None, help="LoRA alpha (default: 2 x rank, so alpha/r = 2)")
    parser.add_argument("--dropout", type=probability, default=LoRAConfig.lora_dropout, help="dropout on the LoRA branch's input")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated LoRA target layer names")
    parser.add_argument("--init", choices=A_INITS, default="kaiming", help="initialisation of LoRA's A matrix")
    add_common_flags(parser, seed=DEFAULT_SEED)
    return parser.parse_args()


def finetune_one(method, base, data, args, lora_config, device):
    """Copy the base, grow its vocabulary, choose what trains, train; return (model, run record)."""
    num_old_tokens = base.config.vocab_size
    # Same new-row init, and (the RNG continuing from the same state) the same LoRA init, for every run with this seed.
    model = grow_vocabulary(base, data.tokenizer.vocab_size, args.seed)
    details = {}
    if method.name == "full":
        prepare_full(model, num_old_tokens)
    elif method.name == "freeze":
        k = args.train_last_k if args.train_last_k is not None else model.config.n_layer // 2
        details["trained_modules"] = prepare_layer_freezing(model, num_old_tokens, k)
        details["train_last_k"] = k
    else:
        wrapped = prepare_lora(model, num_old_tokens, lora_config)
        details["lora"] = {
            **lora_config.to_dict(), "scaling": lora_config.scaling, "adapted_layers": list(wrapped),
            "per_matrix": [{"layer": name, "in": layer.in_features, "out": layer.out_features,
                            **lora_matrix_savings(layer.in_features, layer.out_features, lora_config.r)}
                           for name, layer in wrapped.items()],
        }
    counts = count_parameters(model)
    label = lora_label(lora_config.target_modules) if method.name == "lora" else method.label
    print(f"\n== {label}: {counts['trainable']:,} of {counts['total']:,} parameters train "
          f"({counts['trainable_percent']:.2f}%)")
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr or method.lr,
                         warmup_steps=max(1, min(15, args.steps // 10)), eval_interval=args.eval_interval, seed=args.seed)
    result = train(model, data.splits.train, data.splits.val, config, device, method.name, not args.no_progress)
    record = {"method": method.name, "label": label, "lr": config.lr, "steps": config.steps,
              "batch_size": config.batch_size, "parameters": counts, "breakdown": parameter_breakdown(model),
              **details, **result.to_dict(), "after": data.suite.measure(model, data.tokenizer, device)}
    return model, record


def save_artifacts(method, model, record, out, data, base, lora_config, base_fingerprint):
    """Write the method's model (and for LoRA the adapter and the merged model); return {name: path}."""
    model = model.cpu()
    if method.name == "lora":
        adapter = save_adapter(out / "lora_adapter", model, lora_config, data.tokenizer, base_fingerprint, base.config.vocab_size)
        merged = save_model_dir(out / "lora_merged", merge_lora(model), data.tokenizer)
        return {"lora_adapter": str(adapter), "lora_merged": str(merged)}
    join_new_token_rows(model)
    return {method.directory: str(save_model_dir(out / method.directory, model, data.tokenizer))}


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    device = choose_device(args.device)
    base, base_tokenizer = load_model_dir(args.pretrained, hint="run python train_pretrain.py first")
    data = prepare_finetune_data(base_tokenizer, args.data, args.probes, args.pretrain_corpus, args.pretrain_probes, base.config.block_size)
    names = list(METHODS) if args.method == "all" else [args.method]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    lora_config = LoRAConfig(r=args.rank, lora_alpha=args.alpha if args.alpha is not None else 2.0 * args.rank,
                             lora_dropout=args.dropout, target_modules=targets, init_lora_weights=args.init)
    if "lora" in names:
        apply_lora(copy.deepcopy(base), lora_config)  # check targets and rank now, before anything trains
    if "freeze" in names and args.train_last_k is not None:
        check_train_last_k(args.train_last_k, base.config.n_layer)  # now, before anything trains
    out = ensure_writable_dir(args.out)
    base_fingerprint = model_fingerprint(base)
    print(f"new domain {args.data}: {len(data.splits.train):,} training and {len(data.splits.val):,} validation tokens, "
          f"{len(data.new_words)} new words ({', '.join(data.new_words[:8])}, ...)")
    print(f"vocabulary {base_tokenizer.vocab_size:,} -> {data.tokenizer.vocab_size:,} words")

    before = data.suite.measure(grow_vocabulary(base, data.tokenizer.vocab_size, args.seed).to(device), data.tokenizer, device)

    records, artifacts = {}, {}
    for name in names:
        method = METHODS[name]
        model, record = finetune_one(method, base, data, args, lora_config, device)
        artifacts.update(save_artifacts(method, model, record, out, data, base, lora_config, base_fingerprint))
        records[name] = record

    metrics = {
        "settings": {k: v for k, v in vars(args).items()}, "device": str(device),
        "base_vocab_size": base_tokenizer.vocab_size, "vocab_size": data.tokenizer.vocab_size,
        "new_words": data.new_words, "base_fingerprint": base_fingerprint, "before": before,
        "methods": records, "artifacts": artifacts,
    }
    write_results(out, metrics)
    print_summary(records, before, out, time.perf_counter() - start)


# Results of methods run separately may be combined only if they saw the same data, steps, batches and seed.
SHARED_SETTINGS = ("data", "probes", "pretrain_corpus", "pretrain_probes", "steps", "batch_size", "seed", "eval_interval")


def write_results(out: Path, metrics: dict) -> None:
    """metrics.json plus the two plots. Methods not run this time are kept from an earlier, comparable run."""
    previous = out / "metrics.json"
    if previous.is_file():
        try:
            earlier = json.loads(previous.read_text(encoding="utf-8"))
            comparable = earlier["base_fingerprint"] == metrics["base_fingerprint"] and all(
                earlier["settings"][key] == metrics["settings"][key] for key in SHARED_SETTINGS)
            kept = {name: record for name, record in earlier["methods"].items() if name not in metrics["methods"]}
            if comparable:
                metrics["methods"] = {**kept, **metrics["methods"]}
                metrics["artifacts"] = {**earlier["artifacts"], **metrics["artifacts"]}
            elif kept:
                print(f"note: earlier results for {', '.join(kept)} in {previous} used other settings and are dropped")
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # an unreadable earlier file is simply replaced
    ordered = {name: metrics["methods"][name] for name in METHODS if name in metrics["methods"]}
    metrics["methods"] = ordered
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    plot_parameter_counts({r["label"]: r["parameters"] for r in ordered.values()}, out / "parameter_counts.png")
    plot_loss_curves({r["label"]: r["history"] for r in ordered.values()}, out / "loss_curves.png",
                     "Fine-tuning loss on the new domain")


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
    run_cli(main)
