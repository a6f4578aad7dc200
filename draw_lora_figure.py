"""Draw the LoRA picture: W, A and B of one MiniGPT projection at their real shapes, and the merge.

    python draw_lora_figure.py          # writes docs/lora_diagram.png

The shapes are read from the code, not typed in: a MiniGPT is built from the
default GPTConfig (the model train_pretrain.py trains) and the chosen layer
(q_proj of the first block by default) gives d_out x d_in; the rank and alpha
are LoRAConfig's defaults (the ones train_finetune.py uses). Every box is drawn
to scale, one unit per matrix entry, so the thin A and B next to the square W
show how few numbers LoRA trains.
"""

import os
import signal
import sys

# Ctrl-C while torch is still loading: one line, not a KeyboardInterrupt traceback (run_cli takes over once main starts).
# os._exit, not sys.exit: a SystemExit raised inside an import can be swallowed; nothing is written yet, so nothing to clean up.
# (A KeyboardInterrupt inside numpy's or torch's imports can be swallowed too, the run going on, or leave numpy half-made.)
signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                         os._exit(130)))

from minigpt.plumbing.atomic_writes import atomic_save_figure
from minigpt.config import GPTConfig
from minigpt.plumbing.errors import UserError, run_cli
from minigpt.plumbing.flags import ArgumentParser, lora_alpha, positive_int

from lora.config import LoRAConfig

FROZEN, TRAINED, OUTPUT = "#b8b8b8", "#f4a259", "#8cb8e0"  # grey: frozen; orange: trained; blue: activations


def linear_shapes() -> dict[str, tuple[int, int]]:
    """{module name: (d_out, d_in)} for every nn.Linear of a default-sized MiniGPT (the output head is tied, so left out)."""
    import torch.nn as nn

    from minigpt.model import MiniGPT

    model = MiniGPT(GPTConfig())
    return {name: (m.out_features, m.in_features) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m.weight is not model.token_embedding.weight}


def layer_shape(shapes: dict[str, tuple[int, int]], layer_name: str) -> tuple[int, int]:
    """(d_out, d_in) of the first linear layer named `layer_name` (q_proj: that of the first block)."""
    for name, shape in shapes.items():
        if name.rpartition(".")[2] == layer_name:
            return shape
    names = sorted({n.rpartition(".")[2] for n in shapes})
    raise UserError(f"MiniGPT has no linear layer named {layer_name!r}; choose one of {', '.join(names)}")


def box(axes, x, y, width, height, colour, label="", hatch=None, fontsize=11):
    """A matrix drawn to scale with its lower-left corner at (x, y); its label in the middle."""
    from matplotlib.patches import Rectangle

    axes.add_patch(Rectangle((x, y), width, height, facecolor=colour, edgecolor="black", linewidth=1.2, hatch=hatch))
    if label:
        axes.text(x + width / 2, y + height / 2, label, ha="center", va="center", fontsize=fontsize)


def arrow(axes, start, end):
    axes.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "linewidth": 1.4, "color": "black"})


def draw_forward(axes, d_out, d_in, r, scaling):
    """Left panel: h = W x + (alpha/r) B A x, the frozen path on top and the low-rank path below."""
    from matplotlib.patches import Circle

    middle = 90  # y of the input's centre
    box(axes, 0, middle - d_in / 2, 4, d_in, OUTPUT)
    axes.text(2, middle - d_in / 2 - 4, f"x\n({d_in})", ha="center", va="top", fontsize=11)
    # The frozen path: W, d_out x d_in.
    w_x, w_y = 28, 105
    box(axes, w_x, w_y, d_in, d_out, FROZEN, f"W\n{d_out} x {d_in}\nfrozen", fontsize=12)
    axes.text(w_x + d_in / 2, w_y + d_out + 3, f"{d_out * d_in:,} numbers, not trained", ha="center", va="bottom", fontsize=10)
    # The low-rank path: A (r x d_in) squeezes x to r numbers, B (d_out x r) expands them back to d_out.
    a_x, a_y = 28, 40
    path_y = a_y + r / 2
    box(axes, a_x, a_y, d_in, r, TRAINED)
    axes.text(a_x + d_in / 2, a_y - 3, f"A: {r} x {d_in} = {r * d_in:,} trained\nnumbers (starts random)",
              ha="center", va="top", fontsize=10)
    z_x = a_x + d_in + 10
    box(axes, z_x, a_y, 3, r, OUTPUT)
    axes.text(z_x + 1.5, a_y + r + 2, f"A x\n({r})", ha="center", va="bottom", fontsize=10)
    b_x, b_y = z_x + 16, path_y - d_out / 2
    box(axes, b_x, b_y, r, d_out, TRAINED, hatch="//")
    axes.text(b_x + r / 2, b_y - 3, f"B: {d_out} x {r} = {d_out * r:,} trained\nnumbers (starts at 0)",
              ha="center", va="top", fontsize=10)
    plus_x, plus_y = b_x + 44, middle + 12
    axes.add_patch(Circle((plus_x, plus_y), 4, facecolor="white", edgecolor="black", linewidth=1.2))
    axes.text(plus_x, plus_y, "+", ha="center", va="center", fontsize=16)
    h_x = plus_x + 14
    box(axes, h_x, plus_y - d_out / 2, 4, d_out, OUTPUT)
    axes.text(h_x + 2, plus_y - d_out / 2 - 4, f"h\n({d_out})", ha="center", va="top", fontsize=11)

    arrow(axes, (4, middle + 8), (w_x, w_y + d_out / 2))
    arrow(axes, (4, middle - 8), (a_x, path_y))
    arrow(axes, (a_x + d_in, path_y), (z_x, path_y))
    arrow(axes, (z_x + 3, path_y), (b_x, path_y))
    arrow(axes, (w_x + d_in, w_y + d_out / 2), (plus_x - 4, plus_y + 2))
    arrow(axes, (b_x + r, path_y + 10), (plus_x - 3, plus_y - 3))
    axes.text(b_x + 12, path_y + 44, f"x alpha/r\n= {scaling:g}", ha="right", va="center", fontsize=11)
    arrow(axes, (plus_x + 4, plus_y), (h_x, plus_y))
    axes.text(95, -26, "h = W x + (alpha/r) B A x   (+ the frozen bias)    at step 0 B = 0, so h = W x", ha="center",
              va="top", fontsize=12, family="monospace")
    axes.set_title("Training: the frozen path and the low-rank path, added", fontsize=13)


def draw_merge(axes, d_out, d_in, r, scaling):
    """Right panel: W' = W + (alpha/r) B A, one matrix of the same shape again."""
    top = 110
    box(axes, 0, top - d_out, d_in, d_out, FROZEN, f"W\n{d_out} x {d_in}", fontsize=12)
    axes.text(d_in + 12, top - d_out / 2, f"+ {scaling:g} x", ha="center", va="center", fontsize=13)
    b_x = d_in + 24
    box(axes, b_x, top - d_out, r, d_out, TRAINED, hatch="//")
    axes.text(b_x + r / 2, top + 2, "B", ha="center", va="bottom", fontsize=12)
    a_x = b_x + r + 4
    box(axes, a_x, top - r, d_in, r, TRAINED)
    axes.text(a_x + d_in / 2, top + 2, "A", ha="center", va="bottom", fontsize=12)
    axes.text(a_x + 2, top - r - 8, f"B ({d_out} x {r}) times A ({r} x {d_in}):\na {d_out} x {d_in} matrix\n"
              f"of rank at most {r}", ha="left", va="top", fontsize=10)
    box(axes, 0, top - 2 * d_out - 24, d_in, d_out, "#d9c2a6", f"W'\n{d_out} x {d_in}", fontsize=12)
    axes.text(d_in + 4, top - 1.5 * d_out - 24, f"= W + {scaling:g} B A\n\nsame shape as W: the merged\n"
              "model runs exactly as fast\nas the base model, with no\nLoRA code left", ha="left", va="center", fontsize=11)
    arrow(axes, (d_in / 2, top - d_out - 2), (d_in / 2, top - d_out - 22))
    axes.text(d_in / 2 + 3, top - d_out - 12, "merge once, after training", ha="left", va="center", fontsize=10)
    axes.set_title("After training: merge the update into W", fontsize=13)


def draw(d_out: int, d_in: int, r: int, alpha: float, layer_name: str, targets: list[tuple[int, int]], out: str) -> None:
    """`targets`: the (d_out, d_in) of every matrix train_finetune.py adapts, for the whole-model count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = alpha / r
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 7.6), gridspec_kw={"width_ratios": [1.75, 1]})
    draw_forward(left, d_out, d_in, r, scaling)
    draw_merge(right, d_out, d_in, r, scaling)
    for axes in (left, right):
        axes.set_aspect("equal")  # one unit = one matrix entry in both directions: the shapes are true
        axes.autoscale_view()
        axes.axis("off")
    left.set_xlim(-8, 200)
    left.set_ylim(-36, 186)
    right.set_xlim(-5, 165)
    right.set_ylim(-70, 130)
    full, lora = d_out * d_in, r * (d_in + d_out)
    all_full = sum(o * i for o, i in targets)
    all_lora = sum(r * (o + i) for o, i in targets)
    figure.suptitle(f"LoRA on one layer of MiniGPT, {layer_name}: W is d_out x d_in = {d_out} x {d_in}, rank r = {r}, "
                    f"alpha = {alpha:g} (drawn to scale)", fontsize=14, fontweight="bold")
    figure.text(0.5, 0.045, f"This matrix: full fine-tuning trains d_out x d_in = {full:,} numbers; "
                f"LoRA trains r x (d_in + d_out) = {r} x ({d_in} + {d_out}) = {lora:,}, that is {100 * lora / full:.1f}%.",
                ha="center", fontsize=11)
    figure.text(0.5, 0.01, f"The {len(targets)} matrices train_finetune.py adapts ({', '.join(LoRAConfig().target_modules)} in every block): "
                f"{all_lora:,} trained numbers instead of {all_full:,}.     Grey: frozen.  Orange: trained.  Blue: activations.",
                ha="center", fontsize=11)
    atomic_save_figure(figure, out)
    plt.close(figure)


def parse_args():
    defaults = LoRAConfig()
    parser = ArgumentParser(description="Draw W, A and B of one MiniGPT layer at their real shapes, and the merge.")
    parser.add_argument("--out", default="docs/lora_diagram.png", help="PNG file to write")
    parser.add_argument("--layer", default="q_proj", help="which linear layer of the default MiniGPT to draw")
    parser.add_argument("--rank", type=positive_int, default=defaults.r, help="LoRA rank r (train_finetune.py's default)")
    parser.add_argument("--alpha", type=lora_alpha, default=defaults.lora_alpha, help="LoRA alpha (train_finetune.py's default)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    shapes = linear_shapes()
    d_out, d_in = layer_shape(shapes, args.layer)
    targets = [shape for name, shape in shapes.items() if name.rpartition(".")[2] in LoRAConfig().target_modules]
    if args.rank > min(d_out, d_in):
        raise UserError(f"--rank {args.rank} is larger than {args.layer} allows (min(d_out, d_in) = {min(d_out, d_in)}); "
                        f"use a rank from 1 to {min(d_out, d_in)}")
    draw(d_out, d_in, args.rank, args.alpha, args.layer, targets, args.out)
    lora = args.rank * (d_in + d_out)
    print(f"wrote {args.out}: {args.layer} {d_out} x {d_in} = {d_out * d_in:,} weights; "
          f"LoRA at r = {args.rank} trains {lora:,} ({100 * lora / (d_out * d_in):.1f}%), scaling alpha/r = {args.alpha / args.rank:g}")


if __name__ == "__main__":
    run_cli(main)
