"""The cost study's outputs: a markdown table and a plot of cost against model width, one line per method.

Written by `python experiments.py costs` to dist/experiments/costs/: results.md,
results.json (every measurement) and costs.png.
"""

import json
import platform
import time
from pathlib import Path

import torch

from experiment.plots import pyplot
from experiment.real_model.costs import SHAPES
from minigpt.plumbing.atomic_writes import atomic_save_figure, atomic_write_text

NOTE = ("The models are randomly initialised, not trained: only costs are measured (a step costs the same whatever the "
        "weights are). SmolLM's depth (30 layers) and 49,152-token vocabulary at every width, tied embeddings, float32.")


def machine_line(device: str, threads: int) -> str:
    where = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else f"{platform.processor() or 'CPU'}"
    return f"{platform.system()} {platform.machine()}, {where}, torch {torch.__version__}, {threads} thread(s)"


def results_table(rows: list[dict], settings: dict) -> str:
    lines = [f"# LoRA's costs at real sizes ({settings['device']})", "", NOTE, "",
             f"One step: batch {settings['batch_size']} x {settings['sequence']} tokens, forward + backward + AdamW. "
             f"Median over {settings['repeats']} interleaved repeats, min-max in brackets. Machine: {settings['machine']}; "
             f"{settings['load_note']}", "",
             "| model | method | parameters | trainable | weights MiB | training state MiB | peak memory MiB | step ms | step vs full |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    full_ms = {r["width"]: r["step_ms"] for r in rows if r["method"] == "full fine-tuning" and "error" not in r}
    for row in rows:
        model = SHAPES[row["width"]].name
        if "error" in row:
            lines.append(f"| {model} | {row['method']} | failed: {row['error']} | | | | | | |")
            continue
        low, high = row["peak_mib_range"]
        fast, slow = row["step_ms_range"]
        ratio = f"{row['step_ms'] / full_ms[row['width']]:.2f}x" if row["width"] in full_ms else "-"
        lines.append(f"| {model} | {row['method']} | {row['total_parameters']:,} | {row['trainable_parameters']:,} "
                     f"({100 * row['trainable_parameters'] / row['total_parameters']:.2f}%) | {row['weights_mib']:,.1f} | "
                     f"{row['training_state_mib']:,.1f} | {row['peak_mib']:,.0f} [{low:,.0f}-{high:,.0f}] | "
                     f"{row['step_ms']:,.0f} [{fast:,.0f}-{slow:,.0f}] | {ratio} |")
    lines += ["", "training state = trainable parameters + their gradients + AdamW's two moments (float32, counted from the "
              "tensors); weights = every weight held, 4-bit ones as stored; peak memory = the highest resident memory during "
              "the steps above where it stood before the model was built (weights, state and activations together)."]
    return "\n".join(lines) + "\n"


def plot_costs(rows: list[dict], path: Path, device: str) -> None:
    """Three panels against model width: step time, peak memory, training state; log scales, min-max as error bars."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    panels = [("step_ms", "step_ms_range", "time per training step (ms)"),
              ("peak_mib", "peak_mib_range", "peak memory during the steps (MiB)"),
              ("training_state_mib", None, "training state: trainable params + grads + AdamW (MiB)")]
    for axis, (key, spread, label) in zip(axes, panels):
        for index, method in enumerate(methods):
            mine = sorted((r for r in rows if r["method"] == method and "error" not in r), key=lambda r: r["width"])
            widths, values = [r["width"] for r in mine], [r[key] for r in mine]
            if spread:
                errors = [[v - r[spread][0] for v, r in zip(values, mine)], [r[spread][1] - v for v, r in zip(values, mine)]]
                axis.errorbar(widths, values, yerr=errors, marker="o", capsize=3, color=f"C{index}", label=method)
            else:
                axis.plot(widths, values, marker="o", color=f"C{index}", label=method)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(sorted({r["width"] for r in rows}), [str(w) for w in sorted({r["width"] for r in rows})])
        axis.set_xlabel("model width (hidden size; 576 = SmolLM-135M)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Cost of one training step against model width, randomly initialised Llama shapes ({device})")
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)


def write_cost_results(directory: Path, records: list[dict], rows: list[dict], settings: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "rows": rows, "measurements": records, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(directory / "results.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(directory / "results.md", results_table(rows, settings))
    plot_costs(rows, directory / "costs.png", settings["device"])


def run_cost_study(out: Path, device: str, threads: int, full: bool, show_progress: bool, repeats: int = 3,
                   batch_size: int = 1, sequence: int = 32) -> Path:
    """Measure every width and method (interleaved), then write the table, the plot and every measurement."""
    from tqdm.auto import tqdm
    import transformers.models.llama.modeling_llama  # noqa: F401  imported once here, so each forked child starts with it

    from experiment.real_model.costs import FULL_WIDTHS, METHODS, QUICK_WIDTHS, rank_fits, run_cost_measurements, summarise

    widths = FULL_WIDTHS if full else QUICK_WIDTHS
    total = repeats * sum(rank_fits(w, m) for w in widths for m in METHODS)
    start = time.perf_counter()
    with tqdm(total=total, desc="cost measurements", disable=not show_progress, dynamic_ncols=True) as progress:
        records = run_cost_measurements(widths, list(METHODS), repeats, batch_size, sequence, device, threads, progress)
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"] * 3
    settings = {"device": device, "threads": threads, "repeats": repeats, "batch_size": batch_size, "sequence": sequence,
                "widths": list(widths), "machine": machine_line(device, threads), "seconds": time.perf_counter() - start,
                "load_note": f"load average at the end {', '.join(load)} (1, 5, 15 min) on {torch.get_num_threads()}-thread torch; "
                             "other processes shared the machine, so times carry their noise (hence the ranges)"}
    directory = Path(out) / "costs"
    write_cost_results(directory, records, summarise(records), settings)
    return directory
