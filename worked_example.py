"""LoRA by hand: a 4x3 weight, rank 1, one gradient step and the merge, small enough to check with pencil and paper.

    python worked_example.py

Uses the project's own `LoRALinear` (lora/layer.py) on a frozen 4x3 nn.Linear
with small whole numbers, rank r = 1 and alpha = 2 (so the update is scaled by
alpha / r = 2). It prints, with two decimals:

* step 0: B starts at zero, so the layer computes exactly W x; the gradient
  reaches B but not A (dL/dA carries a factor B, which is zero);
* one plain SGD step on the loss L = 1/2 |h - y|^2;
* the forward pass after the step, and the gradient A gets from then on;
* the merge W' = W + (alpha / r) B A, whose output equals the unmerged one.

tests/test_worked_example.py recomputes every number with hand-written
formulas, and checks that the README's copy of this block is the script's.
"""

import os
import signal
import sys

# Ctrl-C while torch is still loading: one line, not a KeyboardInterrupt traceback (run_cli takes over once main starts).
# os._exit, not sys.exit: a SystemExit raised inside an import can be swallowed; nothing is written yet, so nothing to clean up.
# (A KeyboardInterrupt inside numpy's or torch's imports can be swallowed too, the run going on, or leave numpy half-made.)
signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                         os._exit(130)))

import torch
import torch.nn as nn

from lora.layer import LoRALinear
from minigpt.plumbing.errors import run_cli
from minigpt.plumbing.flags import ArgumentParser

# The inputs: whole numbers, chosen so that A x = 1 and every product stays short.
W = [[1.0, 0.0, 2.0],
     [0.0, 1.0, 1.0],
     [2.0, 1.0, 0.0],
     [1.0, 0.0, 0.0]]  # (out = 4, in = 3), frozen
X = [1.0, 2.0, 1.0]  # one input vector (in = 3)
Y = [3.0, 2.0, 4.0, 3.0]  # the target output (out = 4)
A = [[1.0, -1.0, 2.0]]  # (r = 1, in = 3): LoRA starts A random; here fixed, so the numbers can be checked
R, ALPHA = 1, 2.0  # scaling alpha / r = 2, the project's default scaling (alpha 8 at rank 4)
LEARNING_RATE = 0.1  # plain SGD, so one step is "minus rate times gradient"


def vector(values: torch.Tensor) -> str:
    return "[" + " ".join(f"{v + 0.0:6.2f}" for v in values.tolist()) + " ]"  # + 0.0 prints -0.0 as 0.00


def loss_of(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((h - y) ** 2).sum()  # L = 1/2 |h - y|^2, so dL/dh = h - y


def worked_example() -> str:
    """The whole example as a block of text, computed with lora's LoRALinear."""
    dtype = torch.float64  # exact for these small numbers: no float32 rounding in the printed digits
    base = nn.Linear(3, 4, bias=False, dtype=dtype)
    layer = LoRALinear(base, r=R, lora_alpha=ALPHA)
    x, y = torch.tensor(X, dtype=dtype), torch.tensor(Y, dtype=dtype)
    with torch.no_grad():
        base.weight.copy_(torch.tensor(W, dtype=dtype))
        layer.lora_A.weight.copy_(torch.tensor(A, dtype=dtype))
    # lora_B starts at zero (LoRALinear's own init): nothing to set.
    s = layer.scaling
    lines = [
        f"LoRA by hand: W is 4x3 (out x in), rank r = {R}, alpha = {ALPHA:g}, scaling alpha/r = {s:g}",
        f"x = {vector(x)}   target y = {vector(y)}   loss L = 1/2 |h - y|^2",
        "",
        "W (frozen)                A (1x3)                   B (4x1, a column)",
    ]
    for row in range(4):
        a_part = vector(layer.lora_A.weight[0]) if row == 0 else ""
        lines.append(f"{vector(base.weight[row]):26}{a_part:26}{vector(layer.lora_B.weight[row])}")

    h = layer(x)
    loss = loss_of(h, y)
    loss.backward()
    a_x = (layer.lora_A.weight @ x).item()
    lines += [
        "",
        "step 0 (B = 0)",
        f"  h = W x + {s:g} B (A x)      = {vector(h.detach())}   equals W x = {vector(base(x).detach())}",
        f"  A x = {a_x:.2f}   h - y = {vector((h - y).detach())}   loss = {loss.item():.2f}",
        f"  dL/dB = {s:g} (h - y)(A x)     = {vector(layer.lora_B.weight.grad[:, 0])}",
        f"  dL/dA = {s:g} B^T (h - y) x^T  = {vector(layer.lora_A.weight.grad[0])}",
        "  dL/dA is zero because every path from A to the loss goes through B, and B = 0;",
        "  dL/dB is not, because A is not zero: B moves first, then A follows.",
    ]

    with torch.no_grad():  # plain SGD written out: B <- B - 0.1 dL/dB; A <- A - 0.1 * 0, unchanged
        for parameter in (layer.lora_A.weight, layer.lora_B.weight):
            parameter -= LEARNING_RATE * parameter.grad
            parameter.grad = None
    h = layer(x)
    loss = loss_of(h, y)
    loss.backward()
    lines += [
        "",
        f"after one SGD step (learning rate {LEARNING_RATE:g}): B = B - {LEARNING_RATE:g} dL/dB, A unchanged",
        f"  B = {vector(layer.lora_B.weight[:, 0])}   (the 4x1 column, printed as a row)",
        f"  h = W x + {s:g} B (A x)      = {vector(h.detach())}   loss = {loss.item():.2f}",
        f"  dL/dA = {s:g} B^T (h - y) x^T  = {vector(layer.lora_A.weight.grad[0])}   (B is not zero any more)",
    ]

    unmerged = h.detach()
    delta = layer.delta_weight()
    layer.merge()  # W <- W + (alpha/r) B A: from now on one matmul, no LoRA branch
    with torch.no_grad():
        merged = layer(x)
    lines += ["", f"merge: W' = W + {s:g} B A   (rank 1: every row of {s:g} B A is a multiple of A)",
              f"W' (merged)               {s:g} B A (the update)"]
    for row in range(4):
        lines.append(f"{vector(base.weight[row]):26}{vector(delta[row])}")
    difference = (merged - unmerged).abs().max().item()
    lines.append(f"  W' x = {vector(merged)}   equals the unmerged h (largest difference {difference:.2f})")
    return "\n".join(lines)


def parse_args():
    parser = ArgumentParser(description="Print LoRA's forward pass, one gradient step and the merge on a 4x3 example "
                            "small enough to check by hand (rank 1, alpha 2, SGD with learning rate 0.1).")
    return parser.parse_args()


def main() -> None:
    parse_args()
    print(worked_example())


if __name__ == "__main__":
    run_cli(main)
