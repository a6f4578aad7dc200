"""Every plot the scripts draw: loss curves, parameter counts, learning versus forgetting, storage, latency.

Matplotlib runs headless (Agg), so plots work on any machine without a display.
"""

from minigpt.plumbing.atomic_writes import atomic_save_figure


def pyplot():
    """matplotlib.pyplot on the headless Agg backend, imported when the first plot is drawn.

    Importing it costs about a second, which a script that stops early (a bad
    flag, a missing file) and every test that starts a fresh Python would pay
    for nothing.
    """
    import matplotlib
    matplotlib.use("Agg")  # no display needed: plots are written to files
    import matplotlib.pyplot
    return matplotlib.pyplot


def plot_loss_curves(histories: dict[str, list[dict]], path, title: str) -> None:
    """Train (solid) and validation (dashed) loss against step, one colour per run."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, (name, history) in enumerate(histories.items()):
        colour = f"C{index}"
        steps = [record["step"] for record in history]
        axes.plot(steps, [r["train_loss"] for r in history], color=colour, label=f"{name}: train")
        axes.plot(steps, [r["val_loss"] for r in history], color=colour, linestyle="--", label=f"{name}: validation")
    axes.set_title(title)
    axes.set_xlabel("training step")
    axes.set_ylabel("cross-entropy loss (nats per token)")
    axes.grid(alpha=0.3)
    axes.legend()
    atomic_save_figure(figure, path)
    plt.close(figure)


def plot_parameter_counts(counts: dict[str, dict], path) -> None:
    """Total versus trainable parameters per method on a log scale, each bar labelled."""
    plt = pyplot()
    names = list(counts)
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    positions = range(len(names))
    width = 0.38
    totals = [counts[n]["total"] for n in names]
    trainables = [counts[n]["trainable"] for n in names]
    axes.bar([p - width / 2 for p in positions], totals, width, color="0.7", label="total")
    axes.bar([p + width / 2 for p in positions], trainables, width, color="C0", label="trainable")
    for p, total, trainable in zip(positions, totals, trainables):
        axes.text(p - width / 2, total * 1.15, f"{total:,}", ha="center", fontsize=8)
        axes.text(p + width / 2, trainable * 1.15, f"{trainable:,}\n({100 * trainable / total:.1f}%)", ha="center", fontsize=8)
    axes.set_yscale("log")
    axes.set_ylim(top=max(totals) * 8)
    axes.set_xticks(list(positions), names)
    axes.set_xlabel("fine-tuning method")
    axes.set_ylabel("parameters (count, log scale)")
    axes.set_title("Trainable versus total parameters per fine-tuning method")
    axes.legend(loc="upper right")
    atomic_save_figure(figure, path)
    plt.close(figure)


def plot_forgetting_vs_learning(points: dict[str, tuple[float, float]], path) -> None:
    """points: {method: (increase in pretraining val loss, new-domain val loss)}; lower left is better."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for index, (name, (forgetting, learning)) in enumerate(points.items()):
        axes.scatter([forgetting], [learning], s=70, color=f"C{index}", zorder=3)
        axes.annotate(name, (forgetting, learning), textcoords="offset points", xytext=(7, 5), fontsize=9)
    axes.axvline(0.0, color="0.6", linewidth=0.8)
    axes.set_title("Learning versus forgetting (lower left is better)")
    axes.set_xlabel("forgetting: increase in pretraining validation loss (nats/token)")
    axes.set_ylabel("learning: new-domain validation loss (nats/token)")
    axes.grid(alpha=0.3)
    atomic_save_figure(figure, path)
    plt.close(figure)


def plot_storage(sizes: dict[str, int], path) -> None:
    """Bytes on disk per artifact directory, log scale, each bar labelled."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    names = list(sizes)
    bars = axes.bar(names, [sizes[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    for bar, name in zip(bars, names):
        axes.text(bar.get_x() + bar.get_width() / 2, sizes[name] * 1.1, f"{sizes[name] / 1024:,.1f} KiB", ha="center", fontsize=9)
    axes.set_yscale("log")
    axes.set_ylim(top=max(sizes.values()) * 5)
    axes.set_title("Storage on disk per artifact")
    axes.set_ylabel("bytes on disk (log scale)")
    axes.set_xlabel("artifact directory")
    plt.setp(axes.get_xticklabels(), rotation=15)
    atomic_save_figure(figure, path)
    plt.close(figure)


def plot_latency(latencies: dict[str, dict], path, subtitle: str) -> None:
    """Median milliseconds per generated token, with min-max range as error bars."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    names = list(latencies)
    medians = [latencies[n]["median_ms_per_token"] for n in names]
    low = [m - latencies[n]["min_ms_per_token"] for n, m in zip(names, medians)]
    high = [latencies[n]["max_ms_per_token"] - m for n, m in zip(names, medians)]
    bars = axes.bar(names, medians, yerr=[low, high], capsize=6, color=["0.6", "C3", "C2"][: len(names)])
    for bar, median in zip(bars, medians):
        axes.text(bar.get_x() + bar.get_width() / 2, median / 2, f"{median:.2f} ms", ha="center", color="white", fontsize=10)
    axes.set_title(f"Inference latency per generated token\n{subtitle}", fontsize=11)
    axes.set_ylabel("milliseconds per token (median; bars: min-max)")
    axes.set_xlabel("model")
    atomic_save_figure(figure, path)
    plt.close(figure)
