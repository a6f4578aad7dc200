"""Loss curves. Matplotlib runs headless (Agg), so plots work on any machine."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from minigpt.files import atomic_save_figure  # noqa: E402


def plot_loss_curves(histories: dict[str, list[dict]], path, title: str) -> None:
    """Train (solid) and validation (dashed) loss against step, one colour per run."""
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
