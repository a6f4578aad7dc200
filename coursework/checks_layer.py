"""Rubric checks on one LoRALinear: shapes, init, forward, delta_W, freezing, dropout, merge, dtype.

Each `check_<rubric id>()` returns on success and raises `Fail(hint)` on a
wrong behaviour; any other exception from student code is reported by the
worker. The student's `lora` is imported inside each check, so it is always
the package the worker put on sys.path for this grading run.
"""

import torch
import torch.nn as nn

from coursework.probes import Fail, expected_output, lora_matrices, max_error, randomize, read_delta_weight

TOLERANCE = 1e-5  # float32 forward passes against a float64 reference


def make_layer(in_features: int, out_features: int, r: int, alpha: float, dropout: float = 0.0,
               dtype: torch.dtype = torch.float32, seed: int = 0):
    """(student LoRALinear, the base nn.Linear it wraps), with a non-zero bias."""
    from lora.layer import LoRALinear

    torch.manual_seed(seed)
    base = nn.Linear(in_features, out_features, dtype=dtype)
    with torch.no_grad():
        base.bias.normal_()
    return LoRALinear(base, r, alpha, dropout), base


def check_shapes():
    layer, base = make_layer(12, 10, r=3, alpha=6.0)
    lora_matrices(layer, base, r=3)
    for x_shape, out_shape in (((5, 12), (5, 10)), ((2, 4, 12), (2, 4, 10))):
        out = layer(torch.randn(x_shape))
        if tuple(out.shape) != out_shape:
            raise Fail(f"input {x_shape} gave output {tuple(out.shape)}, expected {out_shape}")


def check_init_equals_base():
    for in_f, out_f, r in ((12, 10, 3), (20, 7, 5)):
        layer, base = make_layer(in_f, out_f, r=r, alpha=2.0 * r)
        layer.eval()
        x = torch.randn(6, in_f)
        with torch.no_grad():
            error = max_error(layer(x), base(x))
        if error > 1e-6:
            _, b = lora_matrices(layer, base, r)
            if b.abs().max() > 0:
                raise Fail("B must start at zero so the adapted model starts equal to the base "
                           f"(B is non-zero at init; output differs by {error:.2e})")
            raise Fail(f"B is zero at init, yet the output differs from the base layer's by {error:.2e}: "
                       "forward changes the frozen path W x + b")


def check_init_gradients():
    layer, base = make_layer(12, 10, r=3, alpha=6.0)
    layer.train()
    a, b = lora_matrices(layer, base, r=3)
    out = layer(torch.randn(8, 12))
    if not out.requires_grad:
        raise Fail("the output does not depend on A and B through autograd, so they never train "
                   "(a .detach() or torch.no_grad() in forward?)")
    (out * torch.randn(8, 10)).sum().backward()
    if a.grad is not None and a.grad.abs().max() > 0:
        raise Fail("A received a gradient at step 0: with B = 0 it must be exactly zero (is B zero at init?)")
    if b.grad is None or b.grad.abs().max() == 0:
        if a.abs().max() == 0:
            raise Fail("A must start random: with A = 0 and B = 0 no gradient reaches B, so training never starts")
        if not b.requires_grad:
            raise Fail("B does not require grad, so it never trains")
        raise Fail("no gradient reaches B: the LoRA branch is cut from the graph (a .detach() or torch.no_grad() in forward?)")


def check_forward_formula():
    for in_f, out_f, r, alpha in ((12, 10, 3, 6.0), (20, 7, 4, 2.0), (16, 24, 2, 16.0), (12, 10, 1, 1.0)):
        layer, base = make_layer(in_f, out_f, r=r, alpha=alpha)
        layer.eval()
        a, b = randomize(layer, base, r)
        x = torch.randn(3, 5, in_f)
        with torch.no_grad():
            got = layer(x).double()
        want = expected_output(base, a, b, alpha / r, x)
        error = max_error(got, want)
        if error > TOLERANCE * max(1.0, want.abs().max().item()):
            raise Fail(_diagnose_forward(got, base, a, b, x, r, alpha, error))


def _diagnose_forward(got, base, a, b, x, r, alpha, error) -> str:
    """Name the mistake when the layer's update is a multiple of B A x with the wrong factor."""
    update = got - expected_output(base, a, b, 0.0, x)
    bax = expected_output(base, a, b, 1.0, x) - expected_output(base, a, b, 0.0, x)
    factor = (update * bax).sum().item() / (bax * bax).sum().item()
    where = f"(r={r}, alpha={alpha:g}, in={base.in_features}, out={base.out_features})"
    if max_error(update, factor * bax) > 1e-4 * max(1.0, bax.abs().max().item()):
        return f"forward does not compute W x + b + (alpha/r) B A x {where}; max error {error:.2e}"
    for value, hint in ((0.0, "forward leaves out the LoRA branch: add (alpha/r) B A x"),
                        (alpha, "the update is not divided by r: scaling must be alpha / r, not alpha"),
                        (1.0, "the update is not scaled: multiply B A x by alpha / r"),
                        (r / alpha, "the scaling is upside down: it is alpha / r, not r / alpha")):
        if abs(factor - value) <= 1e-3 * max(1.0, abs(value)):
            return f"{hint} {where}"
    return f"the update is scaled by {factor:.4g}, expected alpha / r = {alpha / r:g} {where}"


def check_delta_weight():
    layer, base = make_layer(12, 10, r=3, alpha=6.0)
    a, b = randomize(layer, base, r=3)
    delta = read_delta_weight(layer, base)
    if tuple(delta.shape) != (10, 12):
        raise Fail(f"delta_W must have the base weight's shape (out, in) = (10, 12), got {tuple(delta.shape)}")
    error = max_error(delta, 2.0 * b.double() @ a.double())
    if error > TOLERANCE:
        raise Fail(f"delta_W must be (alpha/r) B @ A (max error {error:.2e})")
    singular_values = torch.linalg.svdvals(delta.double())
    rank = int((singular_values > 1e-4 * singular_values.max()).sum())  # float32 rounding is not rank
    if rank > 3:
        raise Fail(f"delta_W has rank {rank}, more than r = 3: the update must be the product B @ A")


def check_frozen_base():
    layer, base = make_layer(12, 10, r=3, alpha=6.0)
    a, b = lora_matrices(layer, base, r=3)
    if base.weight.requires_grad:
        raise Fail("the base weight W must be frozen (requires_grad=False): only A and B train")
    if base.bias.requires_grad:
        raise Fail("the bias is part of the frozen base: freeze it too (requires_grad=False)")
    if not (a.requires_grad and b.requires_grad):
        raise Fail("A and B must be trainable (requires_grad=True)")
    others = [name for name, p in layer.named_parameters() if p.requires_grad and p is not a and p is not b]
    if others:
        raise Fail(f"only A and B may train, but these are trainable too: {', '.join(others)}")


def _identity_a_twins(dropout: float):
    """Two layers on one base, lora_dropout `dropout` and 0, with r == in, A = I and the same random B.

    With A = I the LoRA branch's input can be read back from its output; the
    dropout-free twin gives the student's own scaling, so a scaling mistake
    (graded elsewhere) does not also fail the dropout lines.
    """
    layer, base = make_layer(4, 6, r=4, alpha=4.0, dropout=dropout)
    twin, twin_base = make_layer(4, 6, r=4, alpha=4.0, dropout=0.0)
    matrices = [randomize(module, module_base, r=4) for module, module_base in ((layer, base), (twin, twin_base))]
    with torch.no_grad():
        for a, _ in matrices:
            a.copy_(torch.eye(4))
    return layer, base, twin, matrices[0][1]


def _branch_scale(twin, base, b, x) -> float:
    """c such that the dropout-free layer computes W x + b + c B x (A = I)."""
    with torch.no_grad():
        update = (twin(x) - base(x)).double()
    bx = x.double() @ b.detach().double().T
    scale = (update * bx).sum().item() / (bx * bx).sum().item()
    if abs(scale) < 1e-8:
        raise Fail("the LoRA branch adds nothing to the output, so dropout on its input cannot be checked")
    return scale


def check_dropout_placement():
    p = 0.5
    layer, base, twin, b = _identity_a_twins(p)
    layer.train(), twin.train()
    x = torch.randn(400, 4)
    scale = _branch_scale(twin, base, b, x)
    saved_b = b.detach().clone()
    with torch.no_grad():
        b.zero_()
        frozen = layer(x)
        reference = base(x)
    if max_error(frozen, reference) > 1e-6:
        ratio = frozen / reference
        if bool(((ratio.abs() < 1e-5) | ((ratio - 1 / (1 - p)).abs() < 1e-4)).all()):
            raise Fail("dropout is applied to the layer's output: apply it to the LoRA branch's input only")
        raise Fail("dropout reaches the frozen path W x + b: apply it to the LoRA branch's input only")
    with torch.no_grad():
        b.copy_(saved_b)
        update = layer(x) - base(x)  # = scale * B dropout(x), since A = I
    seen = torch.linalg.lstsq(scale * b.detach().double(), update.double().T).solution.T  # (400, 4): the branch's input
    kept = (seen - x.double() / (1 - p)).abs() < 1e-4
    dropped = seen.abs() < 1e-4
    if not bool((kept | dropped).all()):
        raise Fail("the LoRA branch must compute B A dropout(x); its input is not x with entries dropped and rescaled")
    if not 0.3 < dropped.double().mean().item() < 0.7:
        raise Fail(f"with lora_dropout={p} about half of the branch's inputs should be dropped in train mode, "
                   f"found {dropped.double().mean().item():.0%}: apply nn.Dropout(lora_dropout) to the input of A")


def check_dropout_eval():
    layer, base, twin, b = _identity_a_twins(0.5)
    layer.eval(), twin.eval()
    x = torch.randn(200, 4)
    with torch.no_grad():
        error = max_error(layer(x), twin(x))
    if error > TOLERANCE:
        raise Fail("dropout must be off in eval(): use nn.Dropout (it follows the module's mode), "
                   "or pass training=self.training to F.dropout")


def check_merge_matches():
    layer, base = make_layer(12, 10, r=3, alpha=6.0)
    layer.eval()
    a, b = randomize(layer, base, r=3, std=0.1)
    x = torch.randn(7, 12)
    weight, bias = base.weight.detach().clone(), base.bias.detach().clone()
    delta = 2.0 * b.detach() @ a.detach()
    with torch.no_grad():
        before = layer(x)
        layer.merge()
        after = layer(x)
    change = base.weight.detach() - weight
    if max_error(change, delta) > TOLERANCE:
        if max_error(change, delta / 2.0) <= TOLERANCE:
            raise Fail("merge adds B A without the alpha/r scaling: W <- W + (alpha/r) B A")
        if change.abs().max() == 0:
            raise Fail("merge() did not change the base weight: it must fold the update into W")
        raise Fail(f"after merge() W must be W + (alpha/r) B A (max error {max_error(change, delta):.2e})")
    if not torch.equal(base.bias.detach(), bias):
        raise Fail("merge() must leave the bias alone: the update is B A x, it has no bias term")
    if max_error(after, before) > TOLERANCE:
        if max_error(after - before, x @ delta.T) <= TOLERANCE:
            raise Fail("after merge() forward still adds B A x: once merged, the update lives in W, so use W alone")
        raise Fail(f"the merged layer's output differs from the unmerged one by {max_error(after, before):.2e}")


def check_merge_idempotent():
    layer, base = make_layer(12, 10, r=3, alpha=6.0)
    layer.eval()
    a, b = randomize(layer, base, r=3, std=0.1)
    weight = base.weight.detach().clone()
    layer.merge()
    once = base.weight.detach().clone()
    layer.merge()
    twice = base.weight.detach()
    if max_error(twice, once) > 1e-6:
        if max_error(twice - once, once - weight) <= TOLERANCE:
            raise Fail("merge() twice added the update twice: keep a merged flag and make a second merge() do nothing")
        raise Fail("a second merge() changed W again: it must do nothing on a merged layer")


def check_unmerge_restores():
    layer, base = make_layer(12, 10, r=3, alpha=6.0)
    layer.eval()
    randomize(layer, base, r=3, std=0.1)
    weight = base.weight.detach().clone()
    x = torch.randn(7, 12)
    with torch.no_grad():
        before = layer(x)
    layer.unmerge()
    if max_error(base.weight, weight) > 1e-6:
        raise Fail("unmerge() on a layer that was never merged changed W: it must do nothing then")
    layer.merge()
    layer.unmerge()
    error = max_error(base.weight, weight)
    if error > 1e-6:
        delta = read_delta_weight(layer, base)
        if max_error(base.weight.detach() - weight, 2 * delta) <= TOLERANCE:
            raise Fail("unmerge() adds the update instead of subtracting it: W <- W - (alpha/r) B A")
        raise Fail(f"merge() then unmerge() must restore W within 1e-6 (max error {error:.2e})")
    layer.unmerge()
    if max_error(base.weight, weight) > 1e-6:
        raise Fail("a second unmerge() subtracted the update again: unmerge() of an unmerged layer must do nothing")
    with torch.no_grad():
        after = layer(x)
    if max_error(after, before) > TOLERANCE:
        raise Fail("after unmerge() the output changed: forward must add (alpha/r) B A x again")


def check_dtype():
    layer, base = make_layer(12, 10, r=3, alpha=6.0, dtype=torch.float64)
    a, b = lora_matrices(layer, base, r=3)
    if a.dtype != torch.float64 or b.dtype != torch.float64:
        raise Fail(f"A and B must take the base layer's dtype (float64 here), got {a.dtype} and {b.dtype}: "
                   "create them with dtype=base.weight.dtype")
    out = layer(torch.randn(4, 12, dtype=torch.float64))
    if out.dtype != torch.float64:
        raise Fail(f"a float64 layer must return float64, got {out.dtype}")
    layer.merge()
    if base.weight.dtype != torch.float64:
        raise Fail(f"merge() changed the base weight's dtype to {base.weight.dtype}")
