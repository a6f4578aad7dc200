"""The rows of the methods beside LoRA (adapters, prefix, prompt, BitFit, IA3): each result folder loaded onto the
base and measured as it runs.

Only runs for the methods train_finetune.py --method adapters|prefix|prompt|bitfit|ia3|others has written.
Each row adds what separates these methods: context positions left for text, milliseconds per generated token
with the key/value cache against the base (adapters add two sequential layers per block; prefix tuning p cached
positions per layer), whether the base's tensors stay bit-identical when the task is served, whether tasks swap
by loading a small file onto one base, and for BitFit and IA3 the merge check of merged/ against the result.
"""

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from experiment.comparison.measure import comparison_row, directory_bytes, milliseconds_per_token, raw_tensor_bytes
from experiment.training.finetuning import check_record
from experiment.training.new_token_rows import join_new_token_rows
from experiment.training.other_methods.catalog import MERGEABLE, OTHER_METHODS
from experiment.training.other_methods.preparation import base_tensors_changed
from experiment.training.other_methods.result_directory import load_result
from minigpt.checkpoint import load_model_dir, read_run_info
from minigpt.plumbing.errors import UserError
from minigpt.model import KVCache


@torch.no_grad()
def decode_step_operations(model, prompt_ids: list[int], device) -> int:
    """aten operations one generated token dispatches with the key/value cache (not those inside another aten operation).

    Unlike milliseconds, the count does not depend on how busy the machine is: at this width each operation costs
    mostly its fixed dispatch overhead, so the count is what latency follows (see experiment/studies/overhead.py).
    """
    model.eval()
    cache = KVCache(len(model.blocks))
    model(torch.tensor([prompt_ids], device=device), cache=cache)  # the prompt fills the cache
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        model(torch.tensor([[prompt_ids[-1]]], device=device), cache=cache)
    return sum(1 for e in trace.events() if e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::")))


@torch.no_grad()
def compare_other_methods(results: Path, pretrained, metrics: dict, data, tokenizer, before: dict, timed_beside: dict, device,
                          latency: tuple[list[int], int, int], max_logit_difference) -> dict:
    """{method: figures}, in the units of the methods' rows, plus context, latency with the cache, base and swap checks."""
    trained_runs = metrics.get("other_methods", {})
    if not trained_runs:
        return {}
    base, _ = load_model_dir(pretrained)
    rows, served = {}, dict(timed_beside)  # the base (and LoRA) timed with the cache too, in the same rounds
    for name, trained in trained_runs.items():
        folder = Path(results) / OTHER_METHODS[name].directory
        rerun = f"run python train_finetune.py --method {name} again"
        try:
            check_record(name, trained)
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{Path(results) / 'metrics.json'} is corrupted (bad or missing {error}); {rerun}") from None
        for part in ("result", "merged") if name in MERGEABLE else ("result",):
            found = (read_run_info(folder / part) or {}).get("run_id")
            if found != trained["run_id"]:
                raise UserError(f"the results in {results} mix runs: {folder / part} comes from run {found or '(none recorded)'} "
                                f"but metrics.json records run {trained['run_id']} for {name}; {rerun}")
        model, result_tokenizer, _ = load_result(folder / "result", pretrained, name, device)
        if result_tokenizer.id_to_token != tokenizer.id_to_token:
            raise UserError(f"{folder / 'result'} comes from another run than {results}; {rerun}")
        row = {"result_file_bytes": directory_bytes(folder / "result"), "result_tensor_bytes": raw_tensor_bytes(folder / "result"),
               "context_positions_left": model.text_positions(), "context_positions": model.config.block_size,
               "base_tensors_changed_when_served": base_tensors_changed(model.cpu(), base), "mergeable": name in MERGEABLE}
        model.to(device)
        join_new_token_rows(model)  # one embedding matrix again, so only the method differs from the merged model
        if name in MERGEABLE:
            merged, merged_tokenizer = load_model_dir(folder / "merged", device, hint=rerun)
            if merged_tokenizer.id_to_token != tokenizer.id_to_token:
                raise UserError(f"{folder / 'merged'} comes from another run than {results}; {rerun}")
            row["merge_check_max_abs_logit_difference"] = max_logit_difference(model, merged, data.splits.val)
            row["merged_file_bytes"] = directory_bytes(folder / "merged")
            served[f"{name} merged"] = merged
        served[name] = model
        measured = data.suite.measure(model, tokenizer, device)
        # swappable: the task is a small file on an unchanged base (BitFit's biases are base tensors: the served copy differs)
        row["swappable_on_one_base"] = not row["base_tensors_changed_when_served"]
        rows[name] = {**comparison_row(trained, measured, before), **row}
    prompt_ids, new_tokens, repeats = latency
    timings = milliseconds_per_token(served, prompt_ids, new_tokens, repeats, device, use_cache=True)
    for name, model in served.items():
        timings[name]["operations_per_token_kv_cache"] = decode_step_operations(model, prompt_ids, device)
    for name, row in rows.items():
        row["ms_per_token_kv_cache"] = timings[name]["median_ms_per_token"]
        row["ms_per_token_kv_cache_merged"] = timings.get(f"{name} merged", {}).get("median_ms_per_token")
        row["ms_per_token_kv_cache_base"] = timings["base"]["median_ms_per_token"]
    return {"rows": rows, "latency_kv_cache": timings}


def other_methods_lines(comparison: dict) -> list[str]:
    """The Markdown table of what separates these methods (the shared columns are in the main table)."""
    other = comparison.get("other_methods") or {}
    if not other:
        return []
    lines = ["", "## Methods beside LoRA: context, latency, base, swapping", "",
             "| method | context positions left | ms/token with KV cache (base) | operations per token (base) | merged ms/token "
             "| base tensors changed when served | tasks swap on one base | result file bytes | merge check |",
             "|---|---|---|---|---|---|---|---|---|"]
    timings = other["latency_kv_cache"]
    for name, r in other["rows"].items():
        merged = "-" if r["ms_per_token_kv_cache_merged"] is None else f"{r['ms_per_token_kv_cache_merged']:.3f}"
        check = f"{r['merge_check_max_abs_logit_difference']:.2e}" if "merge_check_max_abs_logit_difference" in r else "not mergeable"
        changed = len(r["base_tensors_changed_when_served"])
        lines.append(f"| {r['label']} | {r['context_positions_left']} of {r['context_positions']} | {r['ms_per_token_kv_cache']:.3f} "
                     f"({r['ms_per_token_kv_cache_base']:.3f}) | {timings[name]['operations_per_token_kv_cache']} "
                     f"({timings['base']['operations_per_token_kv_cache']}) | {merged} | {changed or 'none'} | {'yes' if r['swappable_on_one_base'] else 'no'} "
                     f"| {r['result_file_bytes']:,} | {check} |")
    lines += ["", "With the key/value cache, median [min-max] ms per generated token, and aten operations per token: " + ", ".join(
        f"{name} {t['median_ms_per_token']:.3f} [{t['min_ms_per_token']:.3f}-{t['max_ms_per_token']:.3f}] "
        f"({t['operations_per_token_kv_cache']})" for name, t in timings.items()) + "."]
    return lines
