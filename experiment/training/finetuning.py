"""One fine-tuning run: the base copied, its vocabulary grown, each method trained and saved.

`run_finetuning(args)` is what `train_finetune.py` calls. For each chosen
method it copies the base, lets the method decide what trains
(experiment/training/methods.py), trains with the shared loop (minigpt/training.py),
measures learning and forgetting. Then the whole result set (each method's
model directory, or for LoRA the adapter and the merged model, metrics.json
and two plots) is written into one temporary directory and swapped in at
--out at once, so metrics.json never describes models of another run. Every
artifact carries the id of the run that wrote it (run.json), which metrics.json
records per method; compare.py checks the two agree.
"""

import copy
import json
import shutil
from functools import partial
from pathlib import Path

import torch.nn as nn

from experiment.training.adapter import ADAPTER_FILES, save_adapter
from experiment.training.data import corpus_record, prepare_finetune_data, resolve_data_paths
from experiment.training.methods import (METHODS, check_train_last_k, grow_vocabulary, lora_label, merge_lora_model, prepare_full,
                                prepare_layer_freezing, prepare_lora, prepare_new_rows)
from experiment.training.new_token_rows import join_new_token_rows
from experiment.training.other_methods.catalog import OTHER_METHODS, method_config
from experiment.training.other_methods.preparation import base_tensors_changed, prepare_other_method
from experiment.training.other_methods.result_directory import save_result
from experiment.training.replay import replay_batch_drawer
from experiment.plots import plot_loss_curves, plot_parameter_counts
from experiment.training.variants import VARIANTS, quantization_report, variant_config, variant_prefix, weight_error
from lora import LoRAConfig, apply_lora, count_parameters, lora_matrix_savings, loraplus_parameter_groups, parameter_breakdown
from lora.config import DEFAULT_TARGETS
from minigpt.plumbing.atomic_writes import ensure_writable_dir, new_run_id, refuse_foreign_directory, write_directory_atomically
from minigpt.checkpoint import RUN_FILE, load_model_dir, model_fingerprint, save_model_dir
from minigpt.device import choose_device
from minigpt.distributed import is_main_process
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.flags import apply_threads
from minigpt.plumbing.reading import read_json_file, require_number
from minigpt.training import TrainConfig, train

MAX_ADAPTER_NAME = 64  # adapters/<name>/ and its temporaries (".<name>.<pid>-<hex>.tmp") must fit a file name (255 bytes)
# What a results folder may hold: this script's artifacts and compare.py's outputs. Anything else is the user's.
ARTIFACT_DIRECTORIES = {"full": ["full_finetune"], "freeze": ["layer_freezing"], "lora": ["lora_adapter", "lora_merged"],
                        **{variant: [f"variants/{variant}"] for variant in VARIANTS},  # each holds adapter/ and merged/
                        **{name: [method.directory] for name, method in OTHER_METHODS.items()}}  # result/ (and merged/)
MODEL_FILES = {"config.json", "model.pt", "tokenizer.json", RUN_FILE}
ARTIFACT_FILES = {"full_finetune": MODEL_FILES, "layer_freezing": MODEL_FILES, "lora_merged": MODEL_FILES,
                  "lora_adapter": {*ADAPTER_FILES, RUN_FILE}, "variants": set(VARIANTS), "other_methods": set(OTHER_METHODS)}
# Named adapters (--adapter-name) live beside the default run's result set and are carried over when it is replaced.
NAMED_ADAPTER_DIRECTORIES = ("adapters", "merged")
RESULT_FILES = {*ARTIFACT_FILES, *NAMED_ADAPTER_DIRECTORIES, "metrics.json", "parameter_counts.png", "loss_curves.png",
                "comparison.md", "comparison.json", "forgetting_vs_learning.png", "storage.png", "inference_latency.png",
                "adapters_comparison.md", "adapters_comparison.json"}

# Results of methods run separately may be combined only if they saw the same data, steps, batches and seed.
SHARED_SETTINGS = ("data", "probes", "pretrain_corpus", "pretrain_probes", "steps", "batch_size", "seed", "eval_interval")


def lora_config_from_args(args) -> LoRAConfig:
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    return LoRAConfig(r=args.rank, lora_alpha=args.alpha,
                      lora_dropout=args.dropout, target_modules=targets, init_lora_weights=args.init,
                      use_rslora=args.use_rslora, use_dora=args.use_dora, loraplus_lr_ratio=args.loraplus_lr_ratio,
                      quantize_base=args.quantize_base, quant_block_size=args.quant_block_size,
                      double_quant=not args.no_double_quant).validate()


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
    elif method.name in OTHER_METHODS:  # bottleneck adapters, prefix, prompt, BitFit, IA3 (peft_methods/)
        details[method.name] = prepare_other_method(model, num_old_tokens, method.name, method_config(method.name, args),
                                                    data.tokenizer)
    else:
        wrapped = prepare_lora(model, num_old_tokens, lora_config)
        if lora_config.quantize_base != "none":  # QLoRA: what the 4-bit base costs and loses before training
            linears = {name: m for name, m in base.named_modules() if isinstance(m, nn.Linear)}
            details["quantization"] = {**quantization_report(model), **weight_error(linears, model),
                                       "before": data.suite.measure(model, data.tokenizer, device)}
        details["lora"] = {
            **lora_config.to_dict(), "scaling": lora_config.scaling, "adapted_layers": list(wrapped),
            "per_matrix": [{"layer": name, "in": layer.in_features, "out": layer.out_features,
                            **lora_matrix_savings(layer.in_features, layer.out_features, lora_config.r)}
                           for name, layer in wrapped.items()],
        }
    counts = count_parameters(model)
    label = lora_label(lora_config.target_modules, variant_prefix(lora_config)) if method.name == "lora" else method.label
    print(f"\n== {label}: {counts['trainable']:,} of {counts['total']:,} parameters train "
          f"({counts['trainable_percent']:.2f}%)")
    if method.name == "lora":  # what multiplies B A: Q1 compares runs by it
        rule = "alpha/sqrt(r)" if lora_config.use_rslora else "alpha/r"
        print(f"   rank r = {lora_config.r}, alpha = {lora_config.lora_alpha:g}, scaling {rule} = {lora_config.scaling:.4g}")
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr or method.lr,
                         warmup_steps=max(1, min(15, args.steps // 10)), eval_interval=args.eval_interval, seed=args.seed)
    groups = None
    if method.name == "lora" and lora_config.loraplus_lr_ratio is not None:  # LoRA+: B's group learns ratio times faster
        groups = partial(loraplus_parameter_groups, lr=config.lr, loraplus_lr_ratio=lora_config.loraplus_lr_ratio,
                         weight_decay=config.weight_decay)
    replay = getattr(args, "replay", 0.0)  # share of each batch drawn from the pretraining corpus (experiment/training/replay.py)
    draw_batch = replay_batch_drawer(data, args.pretrain_corpus, replay, model.text_positions(), config.batch_size) if replay else None
    result = train(model, data.splits.train, data.splits.val, config, device, label, not args.no_progress, groups, draw_batch,
                   keep_best=getattr(args, "keep_best", False))
    record = {"method": method.name, "label": label, "lr": config.lr, "steps": config.steps, "replay": replay,
              "batch_size": config.batch_size, "parameters": counts, "breakdown": parameter_breakdown(model),
              **details, **result.to_dict(), "after": data.suite.measure(model, data.tokenizer, device)}
    if method.name in OTHER_METHODS:  # which base tensors training moved: none, or BitFit's biases
        record[method.name]["base_tensors_changed"] = base_tensors_changed(model, base)
    return model, record


def save_artifacts(method, model, out, data, base, lora_config, base_fingerprint, run_info: dict,
                   variant: str | None = None, adapter_name: str | None = None, named_metrics: dict | None = None) -> None:
    """Write the method's model (and for LoRA the adapter and the merged model) under `out`, each with run.json.

    A named adapter (--adapter-name) is one directory, adapters/NAME/, swapped in at once: the adapter's files, its
    merged model in merged/ and the run's figures in metrics.json (`named_metrics`), so a kill or a full disk leaves
    the old set or the new one, never a mix.
    """
    model = model.cpu()
    if method.name == "lora" and adapter_name is not None:
        merged = merge_lora_model(model)
        extra = {"merged": lambda path: save_model_dir(path, merged, data.tokenizer, run_info=run_info),
                 "metrics.json": lambda path: path.write_text(json.dumps(named_metrics, indent=2) + "\n", encoding="utf-8")}
        save_adapter(out / "adapters" / adapter_name, model, lora_config, data.tokenizer, base_fingerprint,
                     base.config.vocab_size, run_info, extra_files=extra)
        return
    if method.name == "lora":
        adapter, merged = ("lora_adapter", "lora_merged") if variant is None else \
            (f"variants/{variant}/adapter", f"variants/{variant}/merged")
        save_adapter(out / adapter, model, lora_config, data.tokenizer, base_fingerprint, base.config.vocab_size, run_info)
        save_model_dir(out / merged, merge_lora_model(model), data.tokenizer, run_info=run_info)
        return
    join_new_token_rows(model)
    save_model_dir(out / method.directory, model, data.tokenizer, run_info=run_info)


def note_ignored_flags(args, names: list[str]) -> None:
    """A flag the chosen methods do not use is said, never silently dropped."""
    if args.train_last_k is not None and "freeze" not in names:
        print(f"note: --train-last-k only affects --method freeze (or all); ignored with --method {args.method}")
    lora_flags = [flag for flag, changed in (
        ("--rank", args.rank != LoRAConfig.r), ("--alpha", args.alpha != LoRAConfig.lora_alpha),
        ("--dropout", args.dropout != LoRAConfig.lora_dropout), ("--targets", args.targets != ",".join(DEFAULT_TARGETS)),
        ("--init", args.init != "kaiming")) if changed]
    if lora_flags and "lora" not in names:
        print(f"note: {', '.join(lora_flags)} only affect --method lora (or all); ignored with --method {args.method}")


def run_finetuning(args) -> tuple[dict, dict, Path]:
    """Fine-tune with every chosen method and save everything; return (this run's records, the base's figures, out)."""
    apply_threads(getattr(args, "threads", None))
    device = choose_device(args.device)
    base, base_tokenizer = load_model_dir(args.pretrained, hint="run python train_pretrain.py first")
    resolve_data_paths(args, args.pretrained)
    data = prepare_finetune_data(base_tokenizer, args.data, args.probes, args.pretrain_corpus, args.pretrain_probes, base.config.block_size)
    others = list(OTHER_METHODS) if args.method == "others" else [args.method] if args.method in OTHER_METHODS else []
    names = [] if others else {"all": list(METHODS), "variants": []}.get(args.method, [args.method])
    adapter_name = getattr(args, "adapter_name", None)
    if adapter_name is not None and (args.method != "lora" or not adapter_name.isidentifier()):
        raise UserError(f"--adapter-name {adapter_name!r} needs --method lora and a name of letters, digits and underscores, "
                        "e.g. --method lora --adapter-name sport")
    if adapter_name is not None and len(adapter_name) > MAX_ADAPTER_NAME:  # it becomes file names: refused before training
        raise UserError(f"--adapter-name is {len(adapter_name)} characters long; use at most {MAX_ADAPTER_NAME}, e.g. sport")
    base.config.check_memory(training=True, batch_size=args.batch_size)  # weights, optimizer and activations, before training
    lora_config = lora_config_from_args(args)
    variants = {v: variant_config(lora_config, v) for v in VARIANTS} if args.method == "variants" else {}
    for config in [lora_config, *variants.values()] if "lora" in names or variants else []:
        apply_lora(copy.deepcopy(base), config)  # check targets, rank and block size now, before anything trains
    if "freeze" in names and args.train_last_k is not None:
        check_train_last_k(args.train_last_k, base.config.n_layer)  # now, before anything trains
    for name in others:  # settings, targets and context checked now, on a copy, before anything trains
        prepare_other_method(copy.deepcopy(base), base.config.vocab_size, name, method_config(name, args), base_tokenizer)
    note_ignored_flags(args, names)
    out = ensure_writable_dir(args.out) if is_main_process() else Path(args.out)  # under torchrun only rank 0 writes
    refuse_foreign_directory(out, RESULT_FILES, ARTIFACT_FILES)  # now, not after training
    base_fingerprint = model_fingerprint(base)
    print(f"new domain {args.data}: {len(data.splits.train):,} training and {len(data.splits.val):,} validation tokens, "
          f"{len(data.new_words)} new words ({', '.join(data.new_words[:8])}, ...)")
    print(f"vocabulary {base_tokenizer.vocab_size:,} -> {data.tokenizer.vocab_size:,} words")

    before = data.suite.measure(grow_vocabulary(base, data.tokenizer.vocab_size, args.seed).to(device), data.tokenizer, device)

    run_id = new_run_id()
    records, models, variant_records, other_records = {}, {}, {}, {}
    for name in names:
        models[name], records[name] = finetune_one(METHODS[name], base, data, args, lora_config, device)
        records[name]["run_id"] = run_id
    for variant, config in variants.items():  # each a LoRA run that differs from plain LoRA in one idea
        models[variant], variant_records[variant] = finetune_one(METHODS["lora"], base, data, args, config, device)
        variant_records[variant].update(run_id=run_id, variant=variant)
    for name in others:
        models[name], other_records[name] = finetune_one(OTHER_METHODS[name], base, data, args, lora_config, device)
        other_records[name]["run_id"] = run_id

    def save_trained(staging: Path) -> None:
        for name, model in models.items():
            info = {"run_id": run_id, "written_by": "train_finetune.py", "method": name}
            if name in variants:
                save_artifacts(METHODS["lora"], model, staging, data, base, variants[name], base_fingerprint, info, name)
            elif name in OTHER_METHODS:  # other_methods/NAME/result/ (and merged/ for BitFit and IA3)
                save_result(staging / OTHER_METHODS[name].directory, name, model.cpu(), method_config(name, args), data.tokenizer,
                            base_fingerprint, base.config.vocab_size, info)
            else:
                save_artifacts(METHODS[name], model, staging, data, base, lora_config, base_fingerprint, info)

    metrics = {
        "run_id": run_id, "settings": {k: v for k, v in vars(args).items()}, "device": str(device),
        "data_corpus": corpus_record(args.data),  # compare.py's default --data: this corpus, checked by its SHA-256
        "base_vocab_size": base_tokenizer.vocab_size, "vocab_size": data.tokenizer.vocab_size,
        "new_words": data.new_words, "base_fingerprint": base_fingerprint, "before": before,
        "methods": records, "variants": variant_records, **({"other_methods": other_records} if others else {}),
    }
    if not is_main_process():  # under torchrun only rank 0 writes; the other processes only helped train
        return {**records, **variant_records, **other_records}, before, out
    if adapter_name is not None:  # a named adapter keeps its figures beside it; the default result set is untouched
        info = {"run_id": run_id, "written_by": "train_finetune.py", "method": "lora", "adapter_name": adapter_name}
        save_artifacts(METHODS["lora"], models["lora"], out, data, base, lora_config, base_fingerprint, info,
                       adapter_name=adapter_name, named_metrics=metrics)
    else:
        write_results(out, metrics, save_trained)
    return {**records, **variant_records, **other_records}, before, out


def write_results(out: Path, metrics: dict, save_trained) -> None:
    """The whole result set, swapped in at `out` at once: this run's artifacts (save_trained(staging)), metrics.json
    and the two plots. Methods (and variants) not run this time are kept, artifacts and records, from an earlier
    comparable run."""
    sections = {"methods": METHODS, "variants": VARIANTS, "other_methods": OTHER_METHODS}  # metrics.json section: the names it may hold
    kept = {section: {} for section in sections}
    previous = out / "metrics.json"
    if previous.is_file():
        try:
            earlier = read_json_file(previous, "metrics file")
            comparable = earlier["base_fingerprint"] == metrics["base_fingerprint"] and all(
                earlier["settings"][key] == metrics["settings"][key] for key in SHARED_SETTINGS)
            for section, names in sections.items():
                kept[section] = {name: record for name, record in earlier.get(section, {}).items()
                                 if name not in metrics.get(section, {}) and name in names}
                for name, record in kept[section].items():
                    check_record("lora" if section == "variants" else name, record)
                    if not all((out / d).is_dir() for d in ARTIFACT_DIRECTORIES[name]):
                        raise ValueError(f"the artifacts of {name}")
            if not comparable:
                dropped = [name for records in kept.values() for name in records]
                if dropped:
                    print(f"note: earlier results for {', '.join(dropped)} in {previous} used other settings and are dropped")
                kept = {section: {} for section in sections}
        except (ValueError, KeyError, TypeError, AttributeError, UserError):
            kept = {section: {} for section in sections}  # an unreadable earlier file, or one whose artifacts are gone
    for section, names in sections.items():
        merged = {**kept[section], **metrics.get(section, {})}
        if merged or section in metrics:  # other_methods appears only once one of them ran: the default metrics.json is as before
            metrics[section] = {name: merged[name] for name in names if name in merged}
    runs = {**metrics["methods"], **metrics["variants"], **metrics.get("other_methods", {})}
    metrics["artifacts"] = {d: str(out / d) for name in runs for d in ARTIFACT_DIRECTORIES[name]}

    def write_files(staging: Path) -> None:
        save_trained(staging)
        for name in [*kept["methods"], *kept["variants"], *kept["other_methods"]]:  # copied as they are, run.json included
            for directory in ARTIFACT_DIRECTORIES[name]:
                shutil.copytree(out / directory, staging / directory)
        for directory in NAMED_ADAPTER_DIRECTORIES:  # named adapters belong to no run of the default set: carried over
            if (out / directory).is_dir():
                shutil.copytree(out / directory, staging / directory)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        plot_parameter_counts({r["label"]: r["parameters"] for r in runs.values()}, staging / "parameter_counts.png")
        plot_loss_curves({r["label"]: r["history"] for r in runs.values()}, staging / "loss_curves.png",
                         "Fine-tuning loss on the new domain")

    write_directory_atomically(out, write_files, replaceable=RESULT_FILES)


def check_record(name: str, record: dict) -> None:
    """Every figure of one method's record in metrics.json has the type it must have; a ValueError naming the first that does not."""
    if not isinstance(record, dict):
        raise ValueError(f"methods.{name}")
    where = f"methods.{name}"
    if not isinstance(record.get("label"), str) or not isinstance(record.get("run_id"), str):
        raise ValueError(f"{where}.label or .run_id (a string)")
    require_number(record["lr"], f"{where}.lr")
    for key in ("steps", "batch_size", "trainable_state_bytes"):
        require_number(record[key], f"{where}.{key}", integer=True)
    for key in ("train_seconds", "tokens_per_second"):
        require_number(record[key], f"{where}.{key}")
    for key in ("trainable", "total"):
        require_number(record["parameters"][key], f"{where}.parameters.{key}", integer=True)
    require_number(record["parameters"]["trainable_percent"], f"{where}.parameters.trainable_percent")
    history = record["history"]
    if not isinstance(history, list) or not history:
        raise ValueError(f"{where}.history (a non-empty list)")
    for point in history:
        if not isinstance(point, dict):
            raise ValueError(f"{where}.history (a list of objects)")
        require_number(point["step"], f"{where}.history[].step", integer=True)
        for key in ("train_loss", "val_loss"):
            require_number(point[key], f"{where}.history[].{key}")
    if name == "lora":
        for matrix in record["lora"]["per_matrix"]:
            if not isinstance(matrix["layer"], str):
                raise ValueError(f"{where}.lora.per_matrix[].layer (a string)")
            require_number(matrix["in"], f"{where}.lora.per_matrix[].in", integer=True)
            require_number(matrix["out"], f"{where}.lora.per_matrix[].out", integer=True)
