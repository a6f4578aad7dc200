"""One fine-tuning run: the base copied, its vocabulary grown, each method trained and saved.

`run_finetuning(args)` is what `train_finetune.py` calls. For each chosen
method it copies the base, lets the method decide what trains
(experiment/methods.py), trains with the shared loop (minigpt/training.py),
measures learning and forgetting, and saves the method's artifacts: a model
directory, or for LoRA the adapter and the merged model. Then it writes
metrics.json and two plots.
"""

import copy
import json
from pathlib import Path

from experiment.adapter import save_adapter
from experiment.data import prepare_finetune_data
from experiment.methods import (METHODS, check_train_last_k, grow_vocabulary, lora_label, merge_lora_model, prepare_full,
                                prepare_layer_freezing, prepare_lora, prepare_new_rows)
from experiment.new_token_rows import join_new_token_rows
from experiment.replay import replay_batch_drawer
from experiment.plots import plot_loss_curves, plot_parameter_counts
from lora import LoRAConfig, apply_lora, count_parameters, lora_matrix_savings, parameter_breakdown
from minigpt.checkpoint import load_model_dir, model_fingerprint, save_model_dir
from minigpt.device import choose_device
from minigpt.io import atomic_write_text, ensure_writable_dir
from minigpt.training import TrainConfig, train

# Results of methods run separately may be combined only if they saw the same data, steps, batches and seed.
SHARED_SETTINGS = ("data", "probes", "pretrain_corpus", "pretrain_probes", "steps", "batch_size", "seed", "eval_interval")


def lora_config_from_args(args) -> LoRAConfig:
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    return LoRAConfig(r=args.rank, lora_alpha=args.alpha,
                      lora_dropout=args.dropout, target_modules=targets, init_lora_weights=args.init)


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
    elif method.name == "rows":
        details["trained_modules"] = prepare_new_rows(model, num_old_tokens)
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
    replay = getattr(args, "replay", 0.0)  # share of each batch drawn from the pretraining corpus (experiment/replay.py)
    draw_batch = replay_batch_drawer(data, args.pretrain_corpus, replay, model.config.block_size, config.batch_size) if replay else None
    result = train(model, data.splits.train, data.splits.val, config, device, method.name, not args.no_progress, draw_batch)
    record = {"method": method.name, "label": label, "lr": config.lr, "steps": config.steps, "replay": replay,
              "batch_size": config.batch_size, "parameters": counts, "breakdown": parameter_breakdown(model),
              **details, **result.to_dict(), "after": data.suite.measure(model, data.tokenizer, device)}
    return model, record


def save_artifacts(method, model, out, data, base, lora_config, base_fingerprint) -> dict:
    """Write the method's model (and for LoRA the adapter and the merged model); return {name: path}."""
    model = model.cpu()
    if method.name == "lora":
        adapter = save_adapter(out / "lora_adapter", model, lora_config, data.tokenizer, base_fingerprint, base.config.vocab_size)
        merged = save_model_dir(out / "lora_merged", merge_lora_model(model), data.tokenizer)
        return {"lora_adapter": str(adapter), "lora_merged": str(merged)}
    join_new_token_rows(model)
    return {method.directory: str(save_model_dir(out / method.directory, model, data.tokenizer))}


def run_finetuning(args) -> tuple[dict, dict, Path]:
    """Fine-tune with every chosen method and save everything; return (this run's records, the base's figures, out)."""
    device = choose_device(args.device)
    base, base_tokenizer = load_model_dir(args.pretrained, hint="run python train_pretrain.py first")
    data = prepare_finetune_data(base_tokenizer, args.data, args.probes, args.pretrain_corpus, args.pretrain_probes, base.config.block_size)
    names = list(METHODS) if args.method == "all" else [args.method]
    lora_config = lora_config_from_args(args)
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
        artifacts.update(save_artifacts(method, model, out, data, base, lora_config, base_fingerprint))
        records[name] = record

    metrics = {
        "settings": {k: v for k, v in vars(args).items()}, "device": str(device),
        "base_vocab_size": base_tokenizer.vocab_size, "vocab_size": data.tokenizer.vocab_size,
        "new_words": data.new_words, "base_fingerprint": base_fingerprint, "before": before,
        "methods": records, "artifacts": artifacts,
    }
    write_results(out, metrics)
    return records, before, out


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
