"""The named studies of experiments.py: what each one runs, and the table and plots it writes.

* seeds:   every method and the new-rows-only control over several seeds; mean, min-max and std of every figure.
* pareto:  a learning-rate grid per method (LoRA at two ranks) over seeds: forgetting against learning, one point
           per run, each method's frontier drawn (Biderman et al., 2024, section 4.3).
* rank:    LoRA rank 1 to 64 with alpha fixed, with alpha = 2r (and rsLoRA where lora has it).
* targets: which layers LoRA adapts, at equal rank and at (about) equal trainable-parameter budget.
* replay:  pretraining text mixed into every fine-tuning batch (experiment/training/replay.py), 0 / 0.1 / 0.25.
* methods: bottleneck adapters, prefix, prompt, BitFit and IA3 (peft_methods/), each over a learning-rate grid,
           beside full fine-tuning, layer freezing and LoRA at their defaults, on one Pareto plot.
* intrinsic-rank: the singular values of full fine-tuning's ΔW (experiment/studies/intrinsic_rank.py); no training.

Most grids have a --full form beside the quick default (more seeds, rates or ranks; docs/results.md describes
those of the studies it reports, methods_grid its own); targets' --full is its quick grid.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from experiment.training.variants import VARIANTS
from experiment.studies.runner import FIGURES, RunSettings, StudyContext, group_over_seeds, rslora_supported, run_grid
from experiment.studies.study_plots import plot_pareto, plot_rank, plot_seed_bars, plot_targets
from minigpt.plumbing.atomic_writes import atomic_write_text
from minigpt.plumbing.errors import UserError

QUICK_SEEDS, FULL_SEEDS = (1337, 1, 2), (1337, 1, 2, 3, 4)
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Study:
    name: str
    summary: str
    grid: Callable[[tuple[int, ...], bool], list[RunSettings]]  # (seeds, full) -> runs
    report: Callable[[list[dict], Path], str]  # (records, study directory) -> markdown
    default_seeds: tuple[int, ...] = QUICK_SEEDS
    full_seeds: tuple[int, ...] = FULL_SEEDS


# ---------------------------------------------------------------- grids


def seeds_grid(seeds, full):
    return [RunSettings(method, seed) for method in ("full", "freeze", "lora", "rows") for seed in seeds]


def pareto_learning_rates(full: bool) -> dict[tuple[str, int], tuple[float, ...]]:
    """{(method, LoRA rank): learning rates}. Rank 16 at alpha 8 has half rank 4's update scale, so higher rates."""
    if not full:
        return {("full", 4): (1e-3, 3e-3, 6e-3), ("freeze", 4): (3e-3, 1e-2), ("rows", 4): (1e-2, 3e-2),
                ("lora", 4): (1e-2, 2e-2, 4e-2), ("lora", 16): (2e-2, 4e-2)}
    return {("full", 4): (5e-4, 1e-3, 2e-3, 3e-3, 6e-3), ("freeze", 4): (3e-3, 5e-3, 1e-2, 2e-2),
            ("rows", 4): (1e-2, 3e-2, 1e-1), ("lora", 4): (5e-3, 1e-2, 2e-2, 4e-2, 8e-2),
            ("lora", 16): (1e-2, 2e-2, 4e-2, 8e-2)}


def pareto_grid(seeds, full):
    return [RunSettings(method, seed, lr=lr, rank=rank) for (method, rank), rates in pareto_learning_rates(full).items()
            for lr in rates for seed in seeds]


RANKS_QUICK, RANKS_FULL = (1, 4, 16, 64), (1, 2, 4, 8, 16, 32, 64)


def rank_grid(seeds, full, ranks=None):
    ranks = ranks or (RANKS_FULL if full else RANKS_QUICK)
    runs = []
    for rank in ranks:
        for seed in seeds:
            runs.append(RunSettings("lora", seed, rank=rank))  # alpha fixed at 8
            runs.append(RunSettings("lora", seed, rank=rank, alpha=2.0 * rank))  # alpha = 2r: scaling 2 at every rank
            if rslora_supported():
                runs.append(RunSettings("lora", seed, rank=rank, rslora=True))
    return runs


# Trainable LoRA numbers per block: q,k,v,o are 64x64 (r * 128 each); up is 256x64 and down 64x256 (r * 320 each).
# Equal rank 4, and equal budget near {q,k,v,o} at rank 4 (2,048 per block): {q,v} r=8 (2,048), {up,down} r=3
# (1,920), all six r=2 (2,304).
TARGET_SETS = {"q,v": ("q_proj", "v_proj"), "q,k,v,o": ("q_proj", "k_proj", "v_proj", "o_proj"),
               "up,down": ("up_proj", "down_proj"), "all linear": ALL_LINEAR}
EQUAL_BUDGET_RANKS = {"q,v": 8, "q,k,v,o": 4, "up,down": 3, "all linear": 2}


def targets_grid(seeds, full):
    runs = []
    for name, targets in TARGET_SETS.items():
        for seed in seeds:
            runs.append(RunSettings("lora", seed, rank=4, targets=targets))
            runs.append(RunSettings("lora", seed, rank=EQUAL_BUDGET_RANKS[name], targets=targets))
    return runs


def variants_grid(seeds, full):
    """Plain LoRA and each variant at the same rank, alpha, targets and learning rate (experiment/training/variants.py)."""
    return [RunSettings("lora", seed, variant=variant) for variant in (None, *VARIANTS) for seed in seeds]


# Three rates per method around the usual range of each (the quick grid); each method's default rate
# (experiment/training/other_methods/catalog.py) is the grid's best by mean new-domain validation loss.
OTHER_METHOD_RATES = {"adapters": (3e-3, 1e-2, 3e-2), "prefix": (3e-3, 1e-2, 3e-2), "prompt": (1e-2, 3e-2, 1e-1),
                      "bitfit": (1e-2, 3e-2, 1e-1), "ia3": (1e-2, 3e-2, 1e-1)}


def methods_grid(seeds, full):
    """Every method at its default rate over all seeds; the five new ones also over their rate grid, at the first
    seed (quick, as the pareto study's quick grid) or at every seed (--full)."""
    grid_seeds = seeds if full else seeds[:1]
    rate_grid = [RunSettings(method, seed, lr=lr) for method, rates in OTHER_METHOD_RATES.items() for lr in rates for seed in grid_seeds]
    at_default = [RunSettings(method, seed) for method in (*OTHER_METHOD_RATES, "full", "freeze", "lora") for seed in seeds]
    return rate_grid + at_default  # the grid first: it is what sets the new methods' default rates


REPLAY_FRACTIONS = (0.0, 0.1, 0.25)


def replay_grid(seeds, full):
    methods = [("full", 4, None), ("lora", 4, None), ("lora", 16, 4e-2)] + ([("freeze", 4, None)] if full else [])
    fractions = REPLAY_FRACTIONS
    return [RunSettings(method, seed, lr=lr, rank=rank, replay=fraction)
            for method, rank, lr in methods for fraction in fractions for seed in seeds]


# ---------------------------------------------------------------- tables


def cell(summary: dict, scale: float = 1.0, digits: int = 3) -> str:
    """'mean [min-max]', or the value alone for one run."""
    mean, low, high = (summary[k] * scale for k in ("mean", "min", "max"))
    if summary["n"] == 1:
        return f"{mean:,.{digits}f}"
    return f"{mean:,.{digits}f} [{low:,.{digits}f}-{high:,.{digits}f}]"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def group_label(group: dict) -> str:
    s = group["settings"]
    parts = [group["label"], f"lr {s['lr']:g}"]
    if s.get("rank") is not None and s["method"] == "lora":
        parts.append(f"alpha {s['alpha']:g}" + (" rsLoRA" if s.get("rslora") else ""))
    if s["replay"]:
        parts.append(f"replay {s['replay']:g}")
    return ", ".join(parts)


def outcome_rows(groups: dict) -> list[list[str]]:
    return [[group_label(g), str(g["runs"]), cell(g["new_val_loss"]), cell(g["new_probes"], digits=1),
             cell(g["old_val_loss"]), cell(g["old_probes"], digits=1), f"{g['trainable_parameters']['mean']:,.0f}"]
            for g in groups.values()]


OUTCOME_HEADER = ["run", "seeds", "new val loss", "new probes %", "old val loss", "old probes %", "trainable params"]


def seeds_report(records, directory):
    groups = group_over_seeds(records)
    plot_seed_bars(groups, directory / "seeds.png")
    rows = [[group_label(g), str(g["runs"])] + [cell(g[key], digits=1 if "probes" in key else 3) if key not in
            ("trainable_parameters", "training_state_bytes", "total_training_bytes", "tokens_per_second")
            else cell(g[key], digits=0) for key, _ in FIGURES] for g in groups.values()]
    france = {g["label"]: sorted({r["capital_of_france"] for r in records if r["label"] == g["label"]}) for g in groups.values()}
    note = "\n'the capital of france is' -> " + "; ".join(f"{label}: {', '.join(map(str, words))}" for label, words in france.items()) + "\n"
    return markdown_table(["run", "seeds"] + [label for _, label in FIGURES], rows) + note


def pareto_report(records, directory):
    plot_pareto(records, directory / "pareto.png", "Learning versus forgetting: one point per run (learning-rate grid x seeds)")
    return markdown_table(OUTCOME_HEADER, outcome_rows(group_over_seeds(records)))


def rank_report(records, directory):
    groups = group_over_seeds(records)
    plot_rank(groups, directory / "rank.png")
    rows = [row + [cell(g["delta_norm"])] for row, g in zip(outcome_rows(groups), groups.values())]
    return markdown_table(OUTCOME_HEADER + ["‖ΔW‖ (all adapted matrices)"], rows)


def targets_report(records, directory):
    groups = group_over_seeds(records)
    plot_targets(groups, directory / "targets.png")
    rows = [row + [cell(g["delta_norm"])] for row, g in zip(outcome_rows(groups), groups.values())]
    return markdown_table(OUTCOME_HEADER + ["‖ΔW‖"], rows)


def variants_report(records, directory):
    groups = group_over_seeds(records)
    plot_seed_bars(groups, directory / "variants.png", "Plain LoRA and its variants")
    return markdown_table(OUTCOME_HEADER + ["train seconds"], [
        row + [cell(g["train_seconds"], digits=1)] for row, g in zip(outcome_rows(groups), groups.values())])


def replay_report(records, directory):
    plot_pareto(records, directory / "replay.png", "Replay: pretraining text mixed into each batch (marker: fraction)",
                by_replay=True)
    return markdown_table(OUTCOME_HEADER, outcome_rows(group_over_seeds(records)))


def methods_report(records, directory):
    plot_pareto(records, directory / "methods.png", "Learning versus forgetting, every method: one point per run "
                "(learning-rate grid x seeds)")
    groups = group_over_seeds(records)
    best = {}  # the rule the first three methods' rates follow (experiment/training/methods.py), at the grid's first seed
    for label in dict.fromkeys(g["label"] for g in groups.values()):
        grid = sorted((g for g in groups.values() if g["label"] == label), key=lambda g: g["settings"]["lr"])
        enough = [g for g in grid if g["new_probes"]["mean"] >= 90]
        best[label] = enough[0] if enough else max(grid, key=lambda g: (g["new_probes"]["mean"], -g["new_val_loss"]["mean"]))
    rows = [row + [cell(g["train_seconds"], digits=1)] for row, g in zip(outcome_rows(groups), groups.values())]
    note = ("\nDefault rate per method: the smallest rate of its grid that learns at least 90% of the new-domain probes, "
            "else the rate that learns the most (mean over the runs at that rate): ") + "; ".join(
        f"{label} {g['settings']['lr']:g}" for label, g in best.items()) + "\n"
    return markdown_table(OUTCOME_HEADER + ["train seconds"], rows) + note


STUDIES = {
    "seeds": Study("seeds", "every method and the new-rows-only control over several seeds", seeds_grid, seeds_report),
    "pareto": Study("pareto", "learning-rate grid per method: forgetting against learning, each method's frontier",
                    pareto_grid, pareto_report, default_seeds=(1337,), full_seeds=QUICK_SEEDS),
    "rank": Study("rank", "LoRA rank 1-64 with alpha fixed and alpha = 2r: losses, probes, ‖ΔW‖", rank_grid, rank_report,
                  full_seeds=QUICK_SEEDS),  # --full: more ranks, the same three seeds
    "targets": Study("targets", "which layers LoRA adapts, at equal rank and equal parameter budget", targets_grid,
                     targets_report, full_seeds=QUICK_SEEDS),
    "variants": Study("variants", "plain LoRA against rsLoRA, LoRA+, DoRA and QLoRA, each changing one idea",
                      variants_grid, variants_report),
    "methods": Study("methods", "bottleneck adapters, prefix, prompt, BitFit and IA3 over a learning-rate grid beside full, "
                     "freeze and LoRA: where each lands", methods_grid, methods_report),
    "replay": Study("replay", "pretraining text mixed into fine-tuning: where each method lands",
                    replay_grid, replay_report),
}


def run_study(study: Study, context: StudyContext, seeds=None, full=False, steps=None, batch_size=None, ranks=None,
              methods=None, lrs=None, show_progress=True) -> tuple[Path, list[dict]]:
    """Run (or read from the cache) every run of the study's grid; write results.json, results.md and the plots."""
    seeds = tuple(seeds) if seeds is not None else (study.full_seeds if full else study.default_seeds)
    grid = rank_grid(seeds, full, ranks) if study.name == "rank" and ranks is not None else study.grid(seeds, full)
    if ranks is not None and study.name != "rank":
        raise UserError("--ranks applies to the rank study only; leave it out or run: python experiments.py rank --ranks 1,4")
    if study.name == "rank":
        widest = context.base.config.n_embd
        if any(s.rank > widest for s in grid):
            print(f"note: ranks above the model's width ({widest}) are skipped: rank {widest} is already full rank")
            grid = [s for s in grid if s.rank <= widest]
    if lrs is not None:  # pareto: the same rates for every method and rank instead of each one's own grid
        grid = list(dict.fromkeys(s.__class__(**{**s.__dict__, "lr": lr}) for s in grid for lr in lrs))
    if methods is not None:
        grid = [s for s in grid if s.method in methods]
    overrides = {k: v for k, v in (("steps", steps), ("batch_size", batch_size)) if v is not None}
    grid = [s.__class__(**{**s.__dict__, **overrides}) for s in grid]
    records = run_grid(study.name, grid, context, show_progress)
    directory = context.out / study.name
    table = study.report(records, directory)
    header = (f"# Study: {study.name}\n\n{study.summary}. {len(records)} runs, seeds {', '.join(map(str, seeds))}, "
              f"{'full' if full else 'quick'} grid. Mean [min-max] over seeds.\n\n")
    atomic_write_text(directory / "results.md", header + table)
    atomic_write_text(directory / "results.json", json.dumps({"study": study.name, "full": full, "seeds": list(seeds),
                                                               "groups": group_over_seeds(records), "runs": records}, indent=1) + "\n")
    return directory, records


def run_intrinsic_rank_study(pretrained: str, results: str, out: Path) -> Path:
    """No training: the spectra of ΔW of the saved full fine-tuning and LoRA models; table, JSON and plot."""
    from experiment.studies.intrinsic_rank import intrinsic_rank  # noqa: PLC0415  (only this study needs it)
    from experiment.studies.study_plots import plot_spectra  # noqa: PLC0415

    report = intrinsic_rank(pretrained, results)
    directory = Path(out) / "intrinsic-rank"
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for method, matrices in report["methods"].items():
        for name, s in matrices.items():
            if s["norm"] == 0:
                continue  # a matrix this method never changed (LoRA's MLP): nothing to analyse
            rows.append([method, name.removeprefix("blocks.").replace("attention.", "").replace("feed_forward.", ""), "x".join(map(str, s["shape"])), f"{s['norm']:.3f}",
                         str(s["rank_for_energy"]), f"{100 * s['kept_by_rank']:.1f}", str(s["numerical_rank"]),
                         f"{100 * s['share_along_W']:.1f}"])
    full = report["methods"]["full fine-tuning"]
    attention = [s["rank_for_energy"] for n, s in full.items() if ".attention." in n]
    mlp = [s["rank_for_energy"] for n, s in full.items() if ".feed_forward." in n]
    kept = [s["kept_by_rank"] for s in full.values()]
    text = (f"# Study: intrinsic-rank\n\nSingular values of ΔW = W_after - W_before for every attention and MLP matrix, "
            f"from {results}/full_finetune and {results}/lora_merged against {pretrained}. "
            f"'rank for 90%': singular values needed for 90% of ‖ΔW‖²; 'rank-4 keeps': the share of ‖ΔW‖² in the "
            f"top 4 singular values; 'along W': the share of ‖ΔW‖² that is a rescaling of W itself (weight decay).\n\n"
            f"Full fine-tuning: rank for 90% {min(attention)}-{max(attention)} in attention (64x64), "
            f"{min(mlp)}-{max(mlp)} in the MLP; a rank-4 truncation keeps {100 * min(kept):.1f}-{100 * max(kept):.1f}% "
            f"of the energy. A random Gaussian matrix of the same shape needs: "
            + ", ".join(f"{shape} {rank}" for shape, rank in report["random_reference"].items()) + ".\n\n")
    text += markdown_table(["model", "matrix", "shape", "‖ΔW‖", "rank for 90%", "rank-4 keeps %", "numerical rank", "along W %"], rows)
    atomic_write_text(directory / "results.md", text)
    atomic_write_text(directory / "results.json", json.dumps(report, indent=1) + "\n")
    spectra = {f"{method}: {kind}": {name.removeprefix("blocks.").replace("attention.", "").replace("feed_forward.", ""): s["singular_values"] for name, s in matrices.items()
                                     if s["norm"] > 0 and (kind == "attention") == (".attention." in name)}
               for method, matrices in report["methods"].items() for kind in ("attention", "MLP")}
    spectra = {kind: matrices for kind, matrices in spectra.items() if matrices}
    plot_spectra(spectra, directory / "spectra.png", "Singular values of ΔW per matrix, normalised by the largest")
    return directory


def run_overhead_study(pretrained: str, out: Path) -> Path:
    """No training: operations, arithmetic and time of one forward pass, base against LoRA unmerged and merged."""
    from experiment.studies.overhead import measure_overhead  # noqa: PLC0415  (only this study needs the profiler)

    report = measure_overhead(pretrained)
    directory = Path(out) / "overhead"
    directory.mkdir(parents=True, exist_ok=True)
    base = report["base"]
    rows = [[name, str(r["operations"]), f"{100 * (r['operations'] / base['operations'] - 1):+.0f}%",
             f"{r['multiply_adds_per_token']:,}", f"{100 * (r['multiply_adds_per_token'] / base['multiply_adds_per_token'] - 1):+.1f}%",
             f"{r['median_ms_per_forward']:.3f}", f"{100 * (r['median_ms_per_forward'] / base['median_ms_per_forward'] - 1):+.0f}%"]
            for name, r in report.items()]
    text = ("# Study: overhead\n\nOne forward pass over a 32-token context (what generation runs for every new token: "
            "there is no key/value cache), one CPU thread, median of 200. LoRA at rank 4 on q, k, v, o.\n\n"
            + markdown_table(["model", "aten operations", "vs base", "multiply-adds per token", "vs base", "ms per forward", "vs base"], rows))
    atomic_write_text(directory / "results.md", text)
    atomic_write_text(directory / "results.json", json.dumps(report, indent=1) + "\n")
    return directory
