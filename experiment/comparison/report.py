"""The comparison as text: a console table and a Markdown report readable on its own."""

from experiment.comparison.other_method_rows import other_methods_lines

ARTIFACT = {"full": "full_finetune", "freeze": "layer_freezing", "lora": "lora_adapter"}


def percent(value) -> str:
    """A share as "95%", or "-" where there were no probes to measure it."""
    return "-" if value is None else f"{value:.0%}"


def _rows(comparison: dict) -> list[list[str]]:
    base = comparison["base"]
    rows = [["pretrained base", "-", "-", "-", "-", "-", f"{base['finetune_val_loss']:.3f}", f"{base['finetune_val_perplexity']:.1f}",
             percent(base['finetune_probe_accuracy']), f"{base['pretrain_val_loss']:.3f}", percent(base['pretrain_probe_accuracy'])]]
    runs = [(m, comparison["storage"][ARTIFACT[name]]["file_bytes"]) for name, m in comparison["methods"].items()]
    runs += [(v, v["adapter_file_bytes"]) for v in comparison.get("variants", {}).values()]
    runs += [(o, o["result_file_bytes"]) for o in (comparison.get("other_methods") or {}).get("rows", {}).values()]
    for m, disk in runs:
        rows.append([
            m["label"], f"{m['trainable_parameters']:,} ({m['trainable_percent']:.1f}%)",
            f"{m['trainable_state_bytes'] / 1024:,.0f} KiB", f"{disk / 1024:,.0f} KiB",
            f"{m['train_seconds']:.1f} s", f"{m['tokens_per_second']:,.0f}",
            f"{m['finetune_val_loss']:.3f}", f"{m['finetune_val_perplexity']:.1f}", percent(m['finetune_probe_accuracy']),
            f"{m['pretrain_val_loss']:.3f} ({m['forgetting_val_loss_increase']:+.3f})",
            percent(m['pretrain_probe_accuracy']),
        ])
    return rows


HEADER = ["method", "trainable params", "training state", "on disk", "train time", "tokens/s",
          "new val loss", "new ppl", "new probes", "old val loss (change)", "old probes"]


def print_table(comparison: dict) -> None:
    rows = [HEADER] + _rows(comparison)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if index == 0:
            print("  ".join("-" * w for w in widths))
    latency = comparison["inference_latency"]
    print("\ninference, ms per generated token (median): " + ", ".join(f"{k} {v['median_ms_per_token']:.2f}" for k, v in latency.items()))
    print(f"merge check: max |logit(adapter on base) - logit(lora_merged)| = {comparison['merge_check_max_abs_logit_difference']:.2e} "
          f"(rounding alone, each against float64: unmerged {comparison['merge_check_float32_noise_floor_unmerged']:.2e}, "
          f"merged {comparison['merge_check_float32_noise_floor_merged']:.2e}; the same merge in float64: "
          f"{comparison['merge_check_float64']:.2e})")
    for variant in comparison.get("variants", {}).values():
        print(f"{variant['label']}: merge check {variant['merge_check_max_abs_logit_difference']:.2e}" + _quantization_line(variant))
    for line in other_methods_lines(comparison)[1:]:
        print(line)
    storage = comparison["storage"]
    print(f"storage: LoRA adapter {storage['lora_adapter']['file_bytes'] / 1024:.1f} KiB vs merged model "
          f"{storage['lora_merged']['file_bytes'] / 1024:.1f} KiB "
          f"({100 * storage['lora_adapter']['file_bytes'] / storage['lora_merged']['file_bytes']:.1f}%)")


def comparison_markdown(comparison: dict) -> str:
    lines = ["# Fine-tuning comparison", "",
             f"Device: {comparison['device']} ({comparison['torch_threads']} threads). Each method trained "
             f"{comparison['steps']} steps of batch size {comparison['batch_size']} with the same data and seed. "
             "\"new\" is the fine-tuning domain (learning), \"old\" the pretraining corpus (forgetting).", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(comparison)]
    lines += ["", "## LoRA parameters per adapted matrix", "", "| layer | in x out | full update | LoRA r(in+out) | ratio |", "|---|---|---|---|---|"]
    for m in comparison["lora_per_matrix"]:
        lines.append(f"| {m['layer']} | {m['in']} x {m['out']} | {m['full']:,} | {m['lora']:,} | {m['ratio']:.1%} |")
    if comparison.get("variants"):
        lines += ["", "## LoRA variants", "", "| variant | merge check (max abs logit difference) | adapter file bytes | 4-bit base |",
                  "|---|---|---|---|"]
        for v in comparison["variants"].values():
            lines.append(f"| {v['label']} | {v['merge_check_max_abs_logit_difference']:.2e} | {v['adapter_file_bytes']:,} | "
                         f"{_quantization_line(v).lstrip('; ') or '-'} |")
    lines += other_methods_lines(comparison)
    lines += ["", "## Storage", "", "| artifact | file bytes | tensor bytes |", "|---|---|---|"]
    for name, s in comparison["storage"].items():
        lines.append(f"| {name} | {s['file_bytes']:,} | {s['tensor_bytes']:,} |")
    lines += ["", "## Inference latency", "", "| model | median ms/token | min | max |", "|---|---|---|---|"]
    for name, t in comparison["inference_latency"].items():
        lines.append(f"| {name} | {t['median_ms_per_token']:.3f} | {t['min_ms_per_token']:.3f} | {t['max_ms_per_token']:.3f} |")
    first = next(iter(comparison["inference_latency"].values()))
    lines += ["", f"Greedy generation, batch size {first['batch_size']}, prompt of {first['prompt_tokens']} tokens, "
              f"{first['new_tokens']} new tokens, one warm-up then the median of {first['repeats']} runs.", "",
              f"Merge check: the largest absolute difference between the logits of the adapter applied onto the base "
              f"and of `lora_merged/`, over every new-domain validation window: "
              f"**{comparison['merge_check_max_abs_logit_difference']:.2e}**. For scale, float32 rounding alone: the unmerged "
              f"model differs from the exact float64 computation by {comparison['merge_check_float32_noise_floor_unmerged']:.2e} "
              f"and the merged one by {comparison['merge_check_float32_noise_floor_merged']:.2e}; the same merge done in "
              f"float64 differs by {comparison['merge_check_float64']:.2e}.", "", "## Generations (greedy)", ""]
    for prompt, outputs in comparison["generations"].items():
        lines += [f"Prompt: `{prompt}`", "", "| model | continuation |", "|---|---|"]
        lines += [f"| {name} | {text} |" for name, text in outputs.items()]
        lines.append("")
    return "\n".join(lines)


def _quantization_line(variant: dict) -> str:
    """QLoRA's figures in one clause: bytes, bits per weight, weight error, the quantized base's losses before training."""
    q = variant.get("quantization") or {}
    if not q:
        return ""
    return (f"; 4-bit base {q['nf4_bytes']:,} bytes against {q['float32_bytes']:,} in float32, "
            f"{q['bits_per_weight']:.3f} bits per weight ({q['bits_per_weight_without_double_quant']:.3f} without double "
            f"quantization), weight error {q['relative_weight_error']:.1%} (relative); the quantized base before training: "
            f"new val loss {q['before']['finetune_val_loss']:.3f}, old val loss {q['before']['pretrain_val_loss']:.3f}")
