"""The side-by-side comparison, measured from the artifacts on disk.

`run_comparison(args)` is what `compare.py` calls. It loads every model
(the base, full_finetune/, layer_freezing/, the LoRA adapter applied onto the
base, and lora_merged/), checks that they belong together, evaluates all of
them on the same held-out data, times generation, checks the merge against
float32 rounding, and writes comparison.md, comparison.json and the plots.
"""

import copy
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiment.training.adapter import load_adapter
from experiment.training.data import prepare_finetune_data, recorded_finetune_corpus, resolve_data_paths
from experiment.training.finetuning import ARTIFACT_DIRECTORIES, check_record
from experiment.comparison.measure import comparison_row, directory_bytes, milliseconds_per_token, raw_tensor_bytes
from experiment.training.methods import METHODS, grow_vocabulary
from experiment.training.variants import VARIANTS
from experiment.training.new_token_rows import join_new_token_rows
from experiment.plots import plot_forgetting_vs_learning, plot_latency, plot_loss_curves, plot_parameter_counts, plot_storage
from experiment.comparison.report import comparison_markdown
from experiment.comparison.other_method_rows import compare_other_methods
from experiment.comparison.variant_rows import compare_variants
from lora import lora_matrix_savings, merge_lora
from minigpt.plumbing.atomic_writes import atomic_write_text, staged_files
from minigpt.checkpoint import load_model_dir, model_fingerprint, read_run_info
from minigpt.plumbing.crash_recovery import recover_directory
from minigpt.device import choose_device
from minigpt.plumbing.errors import UserError
from minigpt.evaluation import complete, note_unknown_prompt_words, prompts_for
from minigpt.plumbing.flags import apply_threads
from minigpt.plumbing.reading import read_json_file

RUN_FINETUNE = "run python train_finetune.py first"

DEFAULT_PROMPTS = ["risotto is made with", "the capital of france is"]  # one new-domain, one pretraining prompt


def load_everything(args, device):
    """Every model from disk, checked to belong together. Returns (models, tokenizer, base, metrics)."""
    base, base_tokenizer = load_model_dir(args.pretrained, hint="run python train_pretrain.py first")
    results = Path(args.results)
    recover_directory(results)  # finish a save of train_finetune.py that was killed, before reading anything
    metrics_file = results / "metrics.json"
    if not metrics_file.is_file():
        raise UserError(f"{metrics_file} does not exist; {RUN_FINETUNE}")
    try:
        metrics = read_json_file(metrics_file, "metrics file")
    except ValueError as error:  # not JSON, or nested too deep
        raise UserError(f"{metrics_file} is corrupted ({error}); {RUN_FINETUNE}") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("methods"), dict):
        raise UserError(f"{metrics_file} is corrupted (no \"methods\" object); {RUN_FINETUNE}")
    missing = [name for name in METHODS if name not in metrics["methods"]]
    if missing:
        raise UserError(f"{metrics_file} has no results for {', '.join(missing)}; run python train_finetune.py --method all")
    try:
        check_metrics(metrics)
    except KeyError as error:
        raise UserError(f"{metrics_file} is corrupted (missing {error}); {RUN_FINETUNE}") from None
    except ValueError as error:  # check_metrics names the field
        raise UserError(f"{metrics_file} is corrupted (bad {error}); {RUN_FINETUNE}") from None
    except (TypeError, AttributeError):  # a list or a number where an object was expected, deeper than the checks go
        raise UserError(f"{metrics_file} is corrupted (a field has the wrong type); {RUN_FINETUNE}") from None
    check_run_ids(results, metrics)
    if metrics.get("base_fingerprint") != model_fingerprint(base):
        raise UserError(f"the results in {results} were fine-tuned from another base than {args.pretrained}; {RUN_FINETUNE}")
    models = {"pretrained base": None}
    for label, directory in (("full fine-tuning", "full_finetune"), ("layer freezing", "layer_freezing")):
        models[label], tokenizer = load_model_dir(results / directory, device, hint=RUN_FINETUNE)
    lora_model, lora_tokenizer, lora_config = load_adapter(results / "lora_adapter", args.pretrained, device)
    join_new_token_rows(lora_model)  # one embedding matrix again, so only the LoRA branch differs from merged
    models["LoRA adapter (unmerged)"] = lora_model
    models["LoRA merged"], merged_tokenizer = load_model_dir(results / "lora_merged", device, hint=RUN_FINETUNE)
    if not (tokenizer.id_to_token == lora_tokenizer.id_to_token == merged_tokenizer.id_to_token):
        raise UserError(f"the artifacts in {results} come from different runs; {RUN_FINETUNE}")
    models["pretrained base"] = grow_vocabulary(base, tokenizer.vocab_size, args.seed).to(device).eval()
    return models, tokenizer, base_tokenizer, metrics, lora_config


def check_metrics(metrics: dict) -> None:
    """Check the type of every figure compare.py reads, so a damaged metrics.json fails here, in one line.
    (load_everything has checked that `methods` is an object holding every method.)"""
    for name in METHODS:
        check_record(name, metrics["methods"][name])
    if len({(metrics["methods"][n]["steps"], metrics["methods"][n]["batch_size"]) for n in METHODS}) != 1:
        raise ValueError("steps and batch size, which differ between methods")
    variants = metrics.get("variants", {})
    if not isinstance(variants, dict) or not set(variants) <= set(VARIANTS):
        raise ValueError(f"variants (an object with some of {', '.join(VARIANTS)})")
    for name, record in variants.items():
        check_record("lora", record)  # a variant's record is a LoRA run's
        if not isinstance(record.get("quantization", {}), dict):
            raise ValueError(f"variants.{name}.quantization")


def check_run_ids(results: Path, metrics: dict) -> None:
    """Every artifact must come from the run metrics.json records for its method: never a mix of two runs."""
    records = {**{name: metrics["methods"][name] for name in METHODS}, **metrics.get("variants", {})}
    for name, record in records.items():  # the variants too: variants/dora/ from another run is refused
        expected = record["run_id"]
        subdirectories = ("adapter", "merged") if name in VARIANTS else ("",)
        for directory in [f"{d}/{sub}".rstrip("/") for d in ARTIFACT_DIRECTORIES[name] for sub in subdirectories]:
            if not (results / directory).is_dir():
                continue  # loading names the missing directory
            found = (read_run_info(results / directory) or {}).get("run_id")
            if found != expected:
                raise UserError(
                    f"the results in {results} mix runs: {directory}/ comes from run {found or '(none recorded)'} but metrics.json "
                    f"records run {expected} for {name}; {RUN_FINETUNE} --method "
                    f"{'variants' if name in VARIANTS else name + ' (or all)'} again")


def merge_tolerance(check: dict) -> float:
    """How far the float32 merge check may go from rounding alone: a float32 model's own distance from the exact
    float64 computation (the unmerged floor; the merged one would include a wrong merge), doubled for two models,
    with room to spare."""
    return max(1e-4, 8 * check["float32_noise_floor_unmerged"])


@torch.no_grad()
def max_logit_difference(model_a, model_b, data: torch.Tensor) -> float:
    """Largest |logit difference| over every validation window (each model runs on its own device)."""
    block = model_a.config.block_size
    n = (len(data) - 1) // block
    windows = data[: n * block].view(n, block)  # (N, T)
    device_a, device_b = next(model_a.parameters()).device, next(model_b.parameters()).device
    worst = 0.0
    for start in range(0, n, 64):
        batch = windows[start : start + 64]
        logits_a = model_a(batch.to(device_a))[0].cpu().double()
        logits_b = model_b(batch.to(device_b))[0].cpu().double()
        worst = max(worst, (logits_a - logits_b).abs().max().item())
    return worst


def merge_checks(unmerged, merged, data: torch.Tensor) -> dict:
    """How exactly lora_merged/ reproduces the adapter, and how exact float32 can be at all.

    float32: the saved artifacts as they are used. Both paths round differently
    (W x + s B (A x) against (W + s B A) x), so this cannot be zero. The noise
    floors compare each float32 model with the exact float64 computation: the
    two float32 models can differ by up to the sum of their floors from rounding
    alone. float64: the same merge done in double precision, which shows that
    the algebra itself is exact.
    """
    unmerged_64 = copy.deepcopy(unmerged).cpu().double()  # on the CPU: not every accelerator has float64
    return {
        "float32": max_logit_difference(unmerged, merged, data),
        "float32_noise_floor_unmerged": max_logit_difference(unmerged, unmerged_64, data),
        "float32_noise_floor_merged": max_logit_difference(merged, unmerged_64, data),
        "float64": max_logit_difference(unmerged_64, merge_lora(unmerged_64), data),
    }


def run_comparison(args) -> dict:
    """Measure everything, write the outputs under the results directory; return the comparison."""
    apply_threads(getattr(args, "threads", None))
    device = choose_device(args.device)
    results = Path(args.results)
    models, tokenizer, base_tokenizer, metrics, lora_config = load_everything(args, device)
    given_data = args.data is not None
    if not given_data:
        args.data = recorded_finetune_corpus(metrics, results)  # the user's own corpus, as the results record it
    resolve_data_paths(args, args.pretrained)
    data = prepare_finetune_data(base_tokenizer, args.data, args.probes, args.pretrain_corpus, args.pretrain_probes,
                                 models["LoRA merged"].config.block_size)
    if data.tokenizer.id_to_token != tokenizer.id_to_token:
        if given_data:
            raise UserError(f"--data {args.data} is not the corpus the results in {results} were fine-tuned on; "
                            "leave --data out to use the corpus they record")
        raise UserError(f"{args.data} is not the corpus the results in {results} were fine-tuned on; {RUN_FINETUNE}")

    print(f"evaluating {len(models)} models on {len(data.splits.val):,} new-domain and {len(data.pretrain_val):,} pretraining validation tokens")
    progress = tqdm(models.items(), desc="evaluating", disable=args.no_progress, leave=False)
    evaluation = {name: data.suite.measure(model, tokenizer, device) for name, model in progress}
    merge_check = merge_checks(models["LoRA adapter (unmerged)"], models["LoRA merged"], data.splits.val)
    if not merge_check["float32"] <= merge_tolerance(merge_check):  # also catches NaN
        raise UserError(
            f"merge check failed: lora_merged/ differs from the adapter on the base by up to {merge_check['float32']:.3g} in the "
            f"logits, beyond float32 rounding ({merge_tolerance(merge_check):.1e}); {results / 'lora_merged'} does not hold this "
            f"adapter merged; {RUN_FINETUNE} --method lora")

    prompt_ids = [tokenizer.eot_id] + tokenizer.encode("the capital of france is the city of")
    print(f"timing generation: {args.latency_tokens} tokens, batch size 1, median of {args.latency_repeats} runs after a warm-up")
    timed = {"base": models["pretrained base"], "LoRA unmerged": models["LoRA adapter (unmerged)"], "LoRA merged": models["LoRA merged"]}
    latency = milliseconds_per_token(timed, prompt_ids, args.latency_tokens, args.latency_repeats, device)

    prompts = args.prompt or prompts_for(tokenizer, DEFAULT_PROMPTS, data.splits.val_documents[:1] + list(data.pretrain_val_documents[:1]))
    if note := note_unknown_prompt_words(tokenizer, prompts):
        print(note)
    generations = {prompt: {name: complete(model, tokenizer, prompt, 16, device) for name, model in models.items()} for prompt in prompts}
    storage = {
        "full_finetune": results / "full_finetune", "layer_freezing": results / "layer_freezing",
        "lora_merged": results / "lora_merged", "lora_adapter": results / "lora_adapter",
    }
    storage = {name: {"file_bytes": directory_bytes(path), "tensor_bytes": raw_tensor_bytes(path)} for name, path in storage.items()}
    per_matrix = [{"layer": m["layer"], "in": m["in"], "out": m["out"], **lora_matrix_savings(m["in"], m["out"], lora_config.r)}
                  for m in metrics["methods"]["lora"]["lora"]["per_matrix"]]

    comparison = build_comparison(metrics, evaluation, merge_check, latency, storage, per_matrix, generations, device)
    comparison["variants"] = compare_variants(results, args.pretrained, metrics, data, tokenizer, evaluation["pretrained base"],
                                              device, max_logit_difference)
    for name, variant in comparison["variants"].items():  # the same float32 tolerance as the LoRA merge check above
        if not variant["merge_check_max_abs_logit_difference"] <= merge_tolerance(merge_check):
            raise UserError(f"merge check failed: variants/{name}/merged/ differs from its adapter on the base by up to "
                            f"{variant['merge_check_max_abs_logit_difference']:.3g} in the logits, beyond float32 rounding "
                            f"({merge_tolerance(merge_check):.1e}); run python train_finetune.py --method variants again")
    comparison["other_methods"] = compare_other_methods(results, args.pretrained, metrics, data, tokenizer, evaluation["pretrained base"],
                                                        {"base": models["pretrained base"], "LoRA unmerged": models["LoRA adapter (unmerged)"],
                                                         "LoRA merged": models["LoRA merged"]}, device, (prompt_ids, args.latency_tokens,
                                                        args.latency_repeats), max_logit_difference)
    for name, row in comparison["other_methods"].get("rows", {}).items():  # the same float32 tolerance as LoRA's merge check
        if not row.get("merge_check_max_abs_logit_difference", 0.0) <= merge_tolerance(merge_check):
            raise UserError(f"merge check failed: {name}'s merged model differs from its result on the base by up to "
                            f"{row['merge_check_max_abs_logit_difference']:.3g} in the logits, beyond float32 rounding; "
                            f"run python train_finetune.py --method {name} again")
    if not comparison["other_methods"]:
        del comparison["other_methods"]  # the default comparison.json is as before
    write_outputs(results, comparison, metrics)
    return comparison


def build_comparison(metrics, evaluation, merge_check, latency, storage, per_matrix, generations, device) -> dict:
    before = evaluation["pretrained base"]
    methods = {}
    for name, label in (("full", "full fine-tuning"), ("freeze", "layer freezing"), ("lora", "LoRA merged")):
        trained, measured = metrics["methods"][name], evaluation[label]
        methods[name] = comparison_row(trained, measured, before)
    return {
        "device": str(device), "torch_threads": torch.get_num_threads(), "steps": metrics["methods"]["full"]["steps"],
        "batch_size": metrics["methods"]["full"]["batch_size"],
        "base": {k: v for k, v in before.items() if not k.endswith("_results")},
        "methods": methods,
        "lora_unmerged": {k: v for k, v in evaluation["LoRA adapter (unmerged)"].items() if not k.endswith("_results")},
        "lora_per_matrix": per_matrix,
        "storage": storage,
        "inference_latency": latency,
        "merge_check_max_abs_logit_difference": merge_check["float32"],
        "merge_check_float32_noise_floor_unmerged": merge_check["float32_noise_floor_unmerged"],
        "merge_check_float32_noise_floor_merged": merge_check["float32_noise_floor_merged"],
        "merge_check_float64": merge_check["float64"],
        "generations": generations,
    }


def write_outputs(results: Path, comparison: dict, metrics: dict) -> None:
    """The tables and plots, staged and then renamed into the results folder together: all new or all old."""
    with staged_files(results) as staging:
        atomic_write_text(staging / "comparison.json", json.dumps(comparison, indent=2) + "\n")
        atomic_write_text(staging / "comparison.md", comparison_markdown(comparison))
        labels = {metrics["methods"][n]["label"]: metrics["methods"][n] for n in METHODS}
        if not (results / "parameter_counts.png").is_file():
            plot_parameter_counts({label: r["parameters"] for label, r in labels.items()}, staging / "parameter_counts.png")
        if not (results / "loss_curves.png").is_file():
            plot_loss_curves({label: r["history"] for label, r in labels.items()}, staging / "loss_curves.png",
                             "Fine-tuning loss on the new domain")
        methods = comparison["methods"]
        plot_forgetting_vs_learning({m["label"]: (m["forgetting_val_loss_increase"], m["finetune_val_loss"]) for m in methods.values()},
                                    staging / "forgetting_vs_learning.png")
        plot_storage({name: s["file_bytes"] for name, s in comparison["storage"].items()}, staging / "storage.png")
        first = next(iter(comparison["inference_latency"].values()))
        plot_latency(comparison["inference_latency"], staging / "inference_latency.png",
                     f"batch size 1, prompt {first['prompt_tokens']} tokens, {first['new_tokens']} new tokens, {comparison['device']}")