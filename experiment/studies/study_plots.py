"""The studies' plots (experiments.py): seed spreads, learning-forgetting Pareto fronts, rank and target sweeps,
singular-value spectra. Error bars span min to max over seeds; markers are means unless one point per run. A plot
whose points are one seed each says "one seed" in its title and draws no error bars: a zero-width bar would
suggest a spread of zero where none was measured."""

from experiment.plots import pyplot
from lora.config import DEFAULT_TARGETS
from minigpt.plumbing.atomic_writes import atomic_save_figure

OUTCOMES = (("new_val_loss", "new-domain validation loss (nats/token)\nlearning: lower is better"),
            ("new_probes", "new-domain probes correct (%)\nlearning: higher is better"),
            ("old_val_loss", "pretraining validation loss (nats/token)\nforgetting: lower is better"),
            ("old_probes", "pretraining probes correct (%)\nforgetting: higher is better"))


def _errors(summaries: list[dict], groups: list[dict]) -> list[list[float]] | None:
    """Min-max error bars around the means, or None (no bars) when every point is a single run."""
    if all(g["runs"] == 1 for g in groups):
        return None
    # max(0, ...): a mean of equal values can land a rounding error outside [min, max]
    return [[max(0.0, s["mean"] - s["min"]) for s in summaries], [max(0.0, s["max"] - s["mean"]) for s in summaries]]


ONE_SEED = "one seed per point, no spread measured"


def _count(counts: list[int]) -> str:
    """Sorted seed counts as "3" or, when points differ, "1-3"."""
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def seeds_caption(groups) -> str:
    """How many seeds each point is, for a plot title: "one seed per point, ..." or "mean over 3 seeds; ..."."""
    counts = sorted({g["runs"] for g in groups})
    return ONE_SEED if counts == [1] else f"mean over {_count(counts)} seeds; error bars: min-max"


def plot_seed_bars(groups: dict, path, what: str = "Every method") -> None:
    """One panel per outcome, one bar per method: mean over seeds, min-max error bars (none for one seed)."""
    plt = pyplot()
    labels = [g["label"] for g in groups.values()]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, ylabel) in zip(axes.flat, OUTCOMES):
        summaries = [g[key] for g in groups.values()]
        ax.bar(range(len(labels)), [s["mean"] for s in summaries], yerr=_errors(summaries, list(groups.values())), capsize=5,
               color=[f"C{i}" for i in range(len(labels))])
        ax.set_xticks(range(len(labels)), labels, rotation=15, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{what} ({seeds_caption(groups.values())})")
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)


def frontier(points: list[tuple[float, float]], lower_x_better: bool, lower_y_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both axes, sorted along x from best to worst."""
    sign_x, sign_y = (1 if lower_x_better else -1), (1 if lower_y_better else -1)
    best, kept = float("inf"), []
    for x, y in sorted(points, key=lambda p: (sign_x * p[0], sign_y * p[1])):
        if sign_y * y < best:
            kept.append((x, y))
            best = sign_y * y
    return kept


def plot_pareto(records: list[dict], path, title: str, by_replay: bool = False) -> None:
    """Forgetting against learning, one point per run; each method's frontier (or, by_replay, its path over fractions,
    through the mean of each fraction's seeds, and the title says over how many)."""
    plt = pyplot()
    if by_replay:
        seeds: dict = {}  # (method, fraction) -> its seeds
        for r in records:
            seeds.setdefault((r["label"], r["settings"]["replay"]), set()).add(r["settings"]["seed"])
        counts = sorted({len(s) for s in seeds.values()})
        title += f"; {ONE_SEED if counts == [1] else f'lines through the means over {_count(counts)} seeds'}"
    labels = list(dict.fromkeys(r["label"] for r in records))
    markers = {0.0: "o", 0.1: "s", 0.25: "^"}
    figure, axes = plt.subplots(1, 2, figsize=(12, 5))
    panels = (("new_val_loss", "old_val_loss", True, True), ("new_probes", "old_probes", False, False))
    for ax, (x_key, y_key, low_x, low_y) in zip(axes, panels):
        for index, label in enumerate(labels):
            runs = [r for r in records if r["label"] == label]
            colour = f"C{index}"
            for run in runs:
                ax.scatter(run[x_key], run[y_key], color=colour, s=28, alpha=0.8,
                           marker=markers.get(run["settings"]["replay"], "D") if by_replay else "o")
            if by_replay:
                fractions = sorted({r["settings"]["replay"] for r in runs})
                means = [(sum(r[x_key] for r in runs if r["settings"]["replay"] == f) / sum(1 for r in runs if r["settings"]["replay"] == f),
                          sum(r[y_key] for r in runs if r["settings"]["replay"] == f) / sum(1 for r in runs if r["settings"]["replay"] == f))
                         for f in fractions]
                ax.plot(*zip(*means), color=colour, label=label)
                for f, (x, y) in zip(fractions, means):
                    ax.annotate(f"{f:g}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7, color=colour)
            else:
                ax.plot(*zip(*frontier([(r[x_key], r[y_key]) for r in runs], low_x, low_y)), color=colour, label=label)
        ax.set_xlabel(dict(OUTCOMES)[x_key].replace("\n", " ("), fontsize=8)
        ax.set_ylabel(dict(OUTCOMES)[y_key].replace("\n", " ("), fontsize=8)
        ax.set_xlabel(ax.get_xlabel() + ")", fontsize=8)
        ax.set_ylabel(ax.get_ylabel() + ")", fontsize=8)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, title="replay fraction: o 0, s 0.1, ^ 0.25" if by_replay else "lines: each method's frontier",
                   title_fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)


def _convention(group: dict) -> str:
    s = group["settings"]
    if s.get("rslora"):
        return f"rsLoRA, alpha {s['alpha']:g} (scaling alpha/sqrt(r))"
    return "alpha fixed at 8 (scaling 8/r)" if s["alpha"] == 8 else "alpha = 2r (scaling 2)"


def plot_rank(groups: dict, path) -> None:
    """Outcomes and ‖ΔW‖ against rank, one line per alpha convention, min-max error bars over seeds (none for one seed)."""
    plt = pyplot()
    series: dict[str, list[dict]] = {}
    for group in groups.values():
        series.setdefault(_convention(group), []).append(group)
    # rank 4 with alpha 8 is both conventions at once: draw it on both lines
    shared = [g for g in groups.values() if g["settings"]["rank"] == 4 and g["settings"]["alpha"] == 8 and not g["settings"].get("rslora")]
    for name in series:
        if name.startswith("alpha = 2r"):
            series[name] += shared
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = (OUTCOMES[0], OUTCOMES[2], OUTCOMES[1], ("delta_norm", "‖ΔW‖, Frobenius, all adapted matrices"))
    for ax, (key, ylabel) in zip(axes.flat, panels):
        for index, (name, members) in enumerate(series.items()):
            members = sorted(members, key=lambda g: g["settings"]["rank"])
            summaries = [g[key] for g in members]
            ax.errorbar([g["settings"]["rank"] for g in members], [s["mean"] for s in summaries], yerr=_errors(summaries, members),
                        marker="o", capsize=4, color=f"C{index}", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("LoRA rank r (log scale; 64 = full rank for this 64-wide model)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(f"LoRA rank sweep on Q, K, V, O ({seeds_caption(groups.values())})")
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)


def _default_targets(group: dict) -> bool:
    return tuple(group.get("settings", {}).get("targets") or DEFAULT_TARGETS) == DEFAULT_TARGETS


def plot_targets(groups: dict, path) -> None:
    """New and old validation loss per target set and rank, trainable parameters under each bar pair."""
    plt = pyplot()
    members = list(groups.values())
    # run labels name the targets only when they differ from the default ("LoRA r=4 up+down"); here every bar needs them
    names = [f"{g['label'].removeprefix('LoRA ')}{' q+k+v+o (default)' if _default_targets(g) else ''}\n"
             f"{g['trainable_parameters']['mean']:,.0f} params" for g in members]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (key, ylabel) in zip(axes, (OUTCOMES[0], OUTCOMES[2])):
        summaries = [g[key] for g in members]
        ax.bar(range(len(members)), [s["mean"] for s in summaries], yerr=_errors(summaries, members), capsize=4,
               color=[f"C{i % 10}" for i in range(len(members))])
        ax.set_xticks(range(len(members)), names, fontsize=7, rotation=30)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("LoRA target layers, rank (trainable parameters incl. 3,392 new-row numbers)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Which layers LoRA adapts ({seeds_caption(members)})")
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)


def plot_spectra(spectra: dict[str, dict[str, list[float]]], path, title: str) -> None:
    """Normalised singular values of ΔW per matrix type: {kind: {matrix name: singular values}}."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(spectra), figsize=(5.5 * len(spectra), 4.5), squeeze=False)
    for ax, (kind, matrices) in zip(axes[0], spectra.items()):
        for index, (name, values) in enumerate(matrices.items()):
            top = values[0] if values and values[0] > 0 else 1.0
            ax.plot(range(1, len(values) + 1), [v / top for v in values], color=f"C{index % 10}", linewidth=1, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("singular value index i")
        ax.set_ylabel("σ_i / σ_1 (log scale)")
        ax.set_title(kind, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    figure.suptitle(title)
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)
