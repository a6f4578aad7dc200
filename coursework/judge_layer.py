"""Grader side: the layer-level rubric lines, judged from the worker's raw results.

For each line, `inputs_<id>(draw)` chooses what the worker feeds the
student's LoRALinear (weights, A, B, x, upstream gradients: fresh random
values every run), and `judge_<id>(inputs, raw)` returns on success or raises
Fail(hint) naming the likely mistake. The expected values are computed here,
in float64, from the grader's own inputs, so a result only passes if it is
what LoRA computes for inputs the worker could not know in advance.
"""

import math

import torch

from coursework.judging import TOLERANCE, Malformed, fitted_factor, flag, matrix, max_error, names, tensor
from coursework.probes import Fail


def expected_output(case: dict, scaling: float) -> torch.Tensor:
    """W x + b + scaling * B A x in float64, from the grader's own case."""
    x, w, b, a, bb = (tensor(case[key]) for key in ("x", "W", "bias", "A", "B"))
    return x @ w.T + b + scaling * (x @ a.T @ bb.T)


def where(case: dict) -> str:
    return f"(r={case['r']}, alpha={case['alpha']:g}, in={len(case['W'][0])}, out={len(case['W'])})"


def inputs_shapes(draw):
    return {"case": draw.case(12, 10, r=3, alpha=6.0), "xs": [draw.normal(5, 12), draw.normal(2, 4, 12)]}


def judge_shapes(inputs, raw):
    own = raw.get("own")
    if not isinstance(own, list) or not all(isinstance(item, list) and len(item) == 2 for item in own):
        raise Malformed("the worker's result for 'own' is not a list of (name, shape)")
    shapes = [tuple(shape) if isinstance(shape, list) else None for _, shape in own]
    if (3, 12) not in shapes or (10, 3) not in shapes:
        found = ", ".join(f"{name} {shape}" for name, shape in own) or "none"
        raise Fail("expected A of shape (r, in) = (3, 12) and B of shape (out, r) = (10, 3); the layer's own parameters are: "
                   f"{found}. Store A as (r, in) and B as (out, r), so delta_W = B @ A")
    outputs = raw.get("outputs")
    if not isinstance(outputs, list) or len(outputs) != 2:
        raise Malformed("the worker's result for 'outputs' is not two tensors")
    case = inputs["case"]
    for x, out, want in zip(inputs["xs"], outputs, ((5, 10), (2, 4, 10))):
        got = matrix({"o": out}, "o")
        if tuple(got.shape) != want:
            raise Fail(f"input {tuple(tensor(x).shape)} gave output {tuple(got.shape)}, expected {want}")
        # the values, up to the scaling (forward_formula's business): the output is W x + b + c B A x
        flat_case = {**case, "x": tensor(x).reshape(-1, 12).tolist()}
        update, bax = got.reshape(-1, 10) - expected_output(flat_case, 0.0), expected_output(flat_case, 1.0) - expected_output(flat_case, 0.0)
        factor = fitted_factor(update, bax)
        if not abs(factor) > 0 or max_error(update, factor * bax) > 1e-4 * max(1.0, bax.abs().max().item()):
            raise Fail(f"the output for input {tuple(tensor(x).shape)} is not W x + b plus a multiple of B A x: "
                       "apply A and B to the last dimension (x @ A.T @ B.T)")


def inputs_init_equals_base(draw):
    return {"cases": [draw.case(in_f, out_f, r=r, alpha=2.0 * r) for in_f, out_f, r in ((12, 10, 3), (20, 7, 5))]}


def judge_init_equals_base(inputs, raw):
    results = raw.get("cases")
    if not isinstance(results, list) or len(results) != len(inputs["cases"]):
        raise Malformed("the worker's result for 'cases' does not match the cases sent")
    for case, result in zip(inputs["cases"], results):
        rows, out_f, r = len(case["x"]), len(case["W"]), case["r"]
        b = matrix(result, "b", (out_f, r))
        out, base_out = matrix(result, "out", (rows, out_f)), matrix(result, "base_out", (rows, out_f))
        if max_error(base_out, expected_output(case, 0.0)) > TOLERANCE:
            raise Malformed("the base layer's output is not W x + b")
        if b.abs().max() > 0:  # exactly zero: a tiny B (std 1e-8) moves the output by less than any tolerance
            raise Fail("B must start exactly at zero so the adapted model starts equal to the base "
                       f"(largest |B| at init is {b.abs().max().item():.1e})")
        error = max_error(out, base_out)
        if error > 1e-6:
            raise Fail(f"B is zero at init, yet the output differs from the base layer's by {error:.2e}: "
                       "forward changes the frozen path W x + b")


def inputs_init_gradients(draw):
    return {"case": draw.case(12, 10, r=3, alpha=6.0, rows=8) | {"g": draw.normal(8, 10)}}


def judge_init_gradients(inputs, raw):
    case = inputs["case"]
    if not flag(raw, "out_requires_grad"):
        raise Fail("the output does not depend on A and B through autograd, so they never train "
                   "(a .detach() or torch.no_grad() in forward?)")
    a = matrix(raw, "a", (3, 12))
    a_grad = None if raw.get("a_grad") is None else matrix(raw, "a_grad", (3, 12))
    b_grad = None if raw.get("b_grad") is None else matrix(raw, "b_grad", (10, 3))
    if a_grad is not None and a_grad.abs().max() > 0:
        raise Fail("A received a gradient at step 0: with B = 0 it must be exactly zero (is B zero at init?)")
    if b_grad is None or b_grad.abs().max() == 0:
        if a.abs().max() == 0:
            raise Fail("A must start random: with A = 0 and B = 0 no gradient reaches B, so training never starts")
        if not flag(raw, "b_requires_grad"):
            raise Fail("B does not require grad, so it never trains")
        raise Fail("no gradient reaches B: the LoRA branch is cut from the graph (a .detach() or torch.no_grad() in forward?)")
    direction = tensor(case["g"]).T @ (tensor(case["x"]) @ a.T)  # dL/dB = s g (A x)^T, s judged by forward_formula
    factor = fitted_factor(b_grad, direction)
    if not factor > 0 or max_error(b_grad, factor * direction) > 1e-4 * max(1.0, b_grad.abs().max().item()):
        raise Fail("B's gradient at step 0 is not proportional to g (A x)^T: the branch must compute B A x")


def inputs_init_gaussian(draw):
    return {"case": draw.case(256, 12, r=4, alpha=8.0), "seed": draw.seed()}


def judge_init_gaussian(inputs, raw):
    a, b = matrix(raw, "a", (4, 256)), matrix(raw, "b", (12, 4))
    if b.abs().max() > 0:
        raise Fail("with init_lora_weights='gaussian', B must still start at exactly zero")
    if a.abs().max() == 0:
        raise Fail("with init_lora_weights='gaussian', A stays zero: draw it from a normal distribution with std 1/r")
    std, mean = a.std().item(), a.mean().item()
    centred = a - mean
    kurtosis = (centred ** 4).mean().item() / (centred ** 2).mean().item() ** 2
    if not 0.8 * 0.25 < std < 1.2 * 0.25 or abs(mean) > 0.05:
        raise Fail(f"with init_lora_weights='gaussian', A should be normal with mean 0 and std 1/r = 0.25 (r=4); "
                   f"found mean {mean:.3f}, std {std:.3f}")
    if kurtosis < 2.2:  # a normal sample's is 3 (standard error 0.15 here), a uniform one's 1.8
        raise Fail("with init_lora_weights='gaussian', A looks uniform, not normal: use nn.init.normal_(A, std=1/r)")


FORWARD_CASES = ((12, 10, 3, 6.0), (20, 7, 4, 2.0), (16, 24, 2, 16.0), (12, 10, 1, 1.0))


def inputs_forward_formula(draw):
    return {"cases": [draw.case(in_f, out_f, r=r, alpha=alpha, rows=15) for in_f, out_f, r, alpha in FORWARD_CASES]}


def _judge_forward(inputs, raw, scaling_of, diagnose):
    outputs = raw.get("outputs")
    if not isinstance(outputs, list) or len(outputs) != len(inputs["cases"]):
        raise Malformed("the worker's result for 'outputs' does not match the cases sent")
    for case, out in zip(inputs["cases"], outputs):
        got = matrix({"out": out}, "out", (len(case["x"]), len(case["W"])))
        want = expected_output(case, scaling_of(case))
        error = max_error(got, want)
        if error > TOLERANCE * max(1.0, want.abs().max().item()):
            update = got - expected_output(case, 0.0)
            bax = expected_output(case, 1.0) - expected_output(case, 0.0)
            factor = fitted_factor(update, bax)
            if max_error(update, factor * bax) > 1e-4 * max(1.0, bax.abs().max().item()):
                raise Fail(f"forward does not compute W x + b + s B A x {where(case)}; max error {error:.2e}")
            raise Fail(diagnose(case, factor))


def _forward_hint(case, factor) -> str:
    r, alpha = case["r"], case["alpha"]
    for value, hint in ((0.0, "forward leaves out the LoRA branch: add (alpha/r) B A x"),
                        (alpha, "the update is not divided by r: scaling must be alpha / r, not alpha"),
                        (1.0, "the update is not scaled: multiply B A x by alpha / r"),
                        (r / alpha, "the scaling is upside down: it is alpha / r, not r / alpha")):
        if abs(factor - value) <= 1e-3 * max(1.0, abs(value)):
            return f"{hint} {where(case)}"
    return f"the update is scaled by {factor:.4g}, expected alpha / r = {alpha / r:g} {where(case)}"


def judge_forward_formula(inputs, raw):
    _judge_forward(inputs, raw, lambda case: case["alpha"] / case["r"], _forward_hint)


RSLORA_CASES = ((20, 24, 4, 8.0), (32, 24, 16, 8.0))


def inputs_rslora_scaling(draw):
    return {"cases": [draw.case(in_f, out_f, r=r, alpha=alpha) for in_f, out_f, r, alpha in RSLORA_CASES]}


def _rslora_hint(case, factor) -> str:
    r, alpha = case["r"], case["alpha"]
    if abs(factor - alpha / r) <= 1e-3 * alpha / r:
        return (f"use_rslora=True is ignored: the update is scaled by alpha / r; rsLoRA's is alpha / sqrt(r) "
                f"= {alpha / math.sqrt(r):g} {where(case)}, so --use-rslora runs would equal plain LoRA")
    return f"with use_rslora=True the update is scaled by {factor:.4g}, expected alpha / sqrt(r) = {alpha / math.sqrt(r):g} {where(case)}"


def judge_rslora_scaling(inputs, raw):
    _judge_forward(inputs, raw, lambda case: case["alpha"] / math.sqrt(case["r"]), _rslora_hint)


def inputs_delta_weight(draw):
    return {"case": draw.case(12, 10, r=3, alpha=6.0)}


def judge_delta_weight(inputs, raw):
    case = inputs["case"]
    delta = matrix(raw, "delta")
    if tuple(delta.shape) != (10, 12):
        raise Fail(f"delta_W must have the base weight's shape (out, in) = (10, 12), got {tuple(delta.shape)}")
    error = max_error(delta, 2.0 * tensor(case["B"]) @ tensor(case["A"]))
    if error > TOLERANCE:
        if max_error(delta.T, 2.0 * tensor(case["B"]) @ tensor(case["A"])) <= TOLERANCE:
            raise Fail("delta_W is transposed: it is (alpha/r) B @ A, shaped (out, in)")
        raise Fail(f"delta_W must be (alpha/r) B @ A (max error {error:.2e})")
    singular_values = torch.linalg.svdvals(delta)
    rank = int((singular_values > 1e-4 * singular_values.max()).sum())  # float32 rounding is not rank
    if rank > 3:
        raise Fail(f"delta_W has rank {rank}, more than r = 3: the update must be the product B @ A")


def inputs_delta_weight_graph(draw):
    return {"case": draw.case(12, 10, r=3, alpha=6.0) | {"G": draw.normal(10, 12)}}


def judge_delta_weight_graph(inputs, raw):
    case = inputs["case"]
    if not flag(raw, "requires_grad"):
        raise Fail("delta_weight() is cut from the autograd graph (a .detach(), .data or torch.no_grad()): "
                   "keep A's and B's graph, so a loss on delta_W reaches them (merge() may use no_grad itself)")
    a, b, g = tensor(case["A"]), tensor(case["B"]), tensor(case["G"])
    a_grad = None if raw.get("a_grad") is None else matrix(raw, "a_grad", (3, 12))
    b_grad = None if raw.get("b_grad") is None else matrix(raw, "b_grad", (10, 3))
    if a_grad is None or b_grad is None:
        raise Fail("a loss on delta_weight() gives no gradient to " + ("A" if a_grad is None else "B")
                   + ": compute it from A's and B's own weights, not from copies")
    for got, direction, name in ((a_grad, b.T @ g, "A"), (b_grad, g @ a.T, "B")):
        factor = fitted_factor(got, direction)
        if not abs(factor) > 0 or max_error(got, factor * direction) > 1e-4 * max(1.0, got.abs().max().item()):
            raise Fail(f"the gradient that reaches {name} through delta_weight() is not that of (alpha/r) B @ A")


def inputs_frozen_base(draw):
    return {"case": draw.case(12, 10, r=3, alpha=6.0, rows=8) | {"g": draw.normal(8, 10)}}


def judge_frozen_base(inputs, raw):
    if flag(raw, "weight") or raw.get("weight_grad") is not None:
        raise Fail("the base weight W must be frozen (requires_grad=False): only A and B train")
    if flag(raw, "bias") or raw.get("bias_grad") is not None:
        raise Fail("the bias is part of the frozen base: freeze it too (requires_grad=False)")
    if not (flag(raw, "a") and flag(raw, "b")):
        raise Fail("A and B must be trainable (requires_grad=True)")
    others = names(raw, "others")
    if others:
        raise Fail(f"only A and B may train, but these are trainable too: {', '.join(others[:4])}")
    case = inputs["case"]
    a, b, x, g = (tensor(case[key]) for key in ("A", "B", "x", "g"))
    for key, shape, direction in (("a_grad", (3, 12), b.T @ g.T @ x), ("b_grad", (10, 3), g.T @ x @ a.T)):
        got = None if raw.get(key) is None else matrix(raw, key, shape)
        factor = math.nan if got is None else fitted_factor(got, direction)
        if got is None or not abs(factor) > 0 or max_error(got, factor * direction) > 1e-4 * max(1.0, got.abs().max().item()):
            raise Fail(f"{key[0].upper()} gets no gradient, or not that of W x + b + s B A x: A and B must be what trains")


def _twin_inputs(draw, rows):
    case = draw.case(4, 6, r=4, alpha=4.0, rows=rows)
    return {"case": case, "p": 0.5}


def inputs_dropout_placement(draw):
    return _twin_inputs(draw, 400)


def judge_dropout_placement(inputs, raw):
    case, p = inputs["case"], inputs["p"]
    shape = (len(case["x"]), 6)
    twin_out, frozen, out, base_out = (matrix(raw, key, shape) for key in ("twin_out", "frozen", "out", "base_out"))
    x, b = tensor(case["x"]), tensor(case["B"])
    reference = expected_output(case, 0.0)
    if max_error(base_out, reference) > TOLERANCE:
        raise Malformed("the base layer's output is not W x + b")
    scale = fitted_factor(twin_out - reference, x @ b.T)  # the dropout-free twin: W x + b + c B x with A = I
    if not abs(scale) > 1e-8:
        raise Fail("the LoRA branch adds nothing to the output, so dropout on its input cannot be checked")
    if max_error(frozen, reference) > 1e-5:
        ratio = frozen / reference
        if bool(((ratio.abs() < 1e-5) | ((ratio - 1 / (1 - p)).abs() < 1e-4)).all()):
            raise Fail("dropout is applied to the layer's output: apply it to the LoRA branch's input only")
        raise Fail("dropout reaches the frozen path W x + b: apply it to the LoRA branch's input only")
    seen = torch.linalg.lstsq(scale * b, (out - reference).T).solution.T  # (rows, 4): the branch's input, A = I
    kept = (seen - x / (1 - p)).abs() < 1e-3
    dropped = seen.abs() < 1e-3
    if not bool((kept | dropped).all()):
        raise Fail("the LoRA branch must compute B A dropout(x); its input is not x with entries dropped and rescaled")
    if not 0.3 < dropped.double().mean().item() < 0.7:
        raise Fail(f"with lora_dropout={p} about half of the branch's inputs should be dropped in train mode, "
                   f"found {dropped.double().mean().item():.0%}: apply nn.Dropout(lora_dropout) to the input of A")


def inputs_dropout_eval(draw):
    return _twin_inputs(draw, 200)


def judge_dropout_eval(inputs, raw):
    shape = (len(inputs["case"]["x"]), 6)
    out, twin_out = matrix(raw, "out", shape), matrix(raw, "twin_out", shape)
    case = inputs["case"]
    reference, bx = expected_output(case, 0.0), tensor(case["x"]) @ tensor(case["B"]).T  # A = I: the branch is c B x
    factor = fitted_factor(twin_out - reference, bx)
    if not abs(factor) > 1e-8 or max_error(twin_out - reference, factor * bx) > 1e-4 * max(1.0, bx.abs().max().item()):
        raise Fail("without dropout the layer does not compute W x + b + s B A x, so dropout in eval() cannot be checked")
    if max_error(out, twin_out) > TOLERANCE:
        raise Fail("dropout must be off in eval(): use nn.Dropout (it follows the module's mode), "
                   "or pass training=self.training to F.dropout")


def _merge_inputs(draw):
    case = draw.case(12, 10, r=3, alpha=6.0, rows=7)
    case["A"], case["B"] = draw.normal(3, 12, std=0.1), draw.normal(10, 3, std=0.1)
    return {"case": case}


inputs_merge_matches = inputs_merge_idempotent = inputs_unmerge_restores = _merge_inputs


def _delta(case) -> torch.Tensor:
    return 2.0 * tensor(case["B"]) @ tensor(case["A"])


def judge_merge_matches(inputs, raw):
    case = inputs["case"]
    weight, bias = matrix(raw, "weight", (10, 12)), matrix(raw, "bias", (10,))
    before, after = matrix(raw, "before", (7, 10)), matrix(raw, "after", (7, 10))
    change, delta = weight - tensor(case["W"]), _delta(case)
    if max_error(before, expected_output(case, 2.0)) > 1e-3:
        raise Fail("before merge() the layer does not compute W x + b + (alpha/r) B A x, so merging cannot be checked")
    if max_error(change, delta) > TOLERANCE:
        if max_error(change, delta / 2.0) <= TOLERANCE:
            raise Fail("merge adds B A without the alpha/r scaling: W <- W + (alpha/r) B A")
        if change.abs().max() == 0:
            raise Fail("merge() did not change the base weight: it must fold the update into W")
        raise Fail(f"after merge() W must be W + (alpha/r) B A (max error {max_error(change, delta):.2e})")
    if not torch.equal(bias, tensor(case["bias"])):
        raise Fail("merge() must leave the bias alone: the update is B A x, it has no bias term")
    if max_error(after, before) > TOLERANCE:
        if max_error(after - before, tensor(case["x"]) @ delta.T) <= TOLERANCE:
            raise Fail("after merge() forward still adds B A x: once merged, the update lives in W, so use W alone")
        raise Fail(f"the merged layer's output differs from the unmerged one by {max_error(after, before):.2e}")


def judge_merge_idempotent(inputs, raw):
    case = inputs["case"]
    once, twice = matrix(raw, "once", (10, 12)), matrix(raw, "twice", (10, 12))
    if max_error(once - tensor(case["W"]), _delta(case)) > TOLERANCE:
        raise Fail("the first merge() does not give W + (alpha/r) B A, so a second one cannot be checked")
    if max_error(twice, once) > 1e-6:
        if max_error(twice - once, once - tensor(case["W"])) <= TOLERANCE:
            raise Fail("merge() twice added the update twice: keep a merged flag and make a second merge() do nothing")
        raise Fail("a second merge() changed W again: it must do nothing on a merged layer")


def judge_unmerge_restores(inputs, raw):
    case = inputs["case"]
    weight = tensor(case["W"])
    first, restored, again = (matrix(raw, key, (10, 12)) for key in ("unmerged_first", "restored", "again"))
    before, after = matrix(raw, "before", (7, 10)), matrix(raw, "after", (7, 10))
    if max_error(before, expected_output(case, 2.0)) > 1e-3:
        raise Fail("before merge() the layer does not compute W x + b + (alpha/r) B A x, so unmerging cannot be checked")
    if max_error(first, weight) > 1e-6:
        raise Fail("unmerge() on a layer that was never merged changed W: it must do nothing then")
    error = max_error(restored, weight)
    if error > 1e-6:
        if max_error(restored - weight, 2 * _delta(case)) <= TOLERANCE:
            raise Fail("unmerge() adds the update instead of subtracting it: W <- W - (alpha/r) B A")
        raise Fail(f"merge() then unmerge() must restore W within 1e-6 (max error {error:.2e})")
    if max_error(again, weight) > 1e-6:
        raise Fail("a second unmerge() subtracted the update again: unmerge() of an unmerged layer must do nothing")
    if max_error(after, before) > TOLERANCE:
        raise Fail("after unmerge() the output changed: forward must add (alpha/r) B A x again")


def inputs_dtype(draw):
    return {"case": draw.case(12, 10, r=3, alpha=6.0, rows=4)}


def judge_dtype(inputs, raw):
    a, b, out, merged = (raw.get(key) for key in ("a", "b", "out", "merged_weight"))
    if not all(isinstance(value, str) for value in (a, b, out, merged)):
        raise Malformed("the worker's dtypes are not names")
    if a != "torch.float64" or b != "torch.float64":
        raise Fail(f"A and B must take the base layer's dtype (float64 here), got {a} and {b}: "
                   "create them with dtype=base.weight.dtype")
    if out != "torch.float64":
        raise Fail(f"a float64 layer must return float64, got {out}")
    if merged != "torch.float64":
        raise Fail(f"merge() changed the base weight's dtype to {merged}")
    error = max_error(matrix(raw, "values", (4, 10)), expected_output(inputs["case"], 2.0))
    if error > 1e-12:  # float64 all the way: float32 anywhere on the path leaves an error near 1e-7
        raise Fail(f"a float64 layer computes in lower precision somewhere (error {error:.1e} against float64 arithmetic)")
