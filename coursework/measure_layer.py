"""Worker side: run the student's LoRALinear on the inputs the grader chose and report raw results.

One `measure_<rubric id>(inputs)` per layer-level rubric line. Each returns
plain numbers, lists and flags; it judges nothing (judge_layer.py, in the
grading process, does). Raising Fail can only cost the line its points.
"""

import torch

from coursework.probes import Fail, lora_matrices, make_layer, plain, read_delta_weight, set_matrices, tensor


def measure_shapes(inputs):
    layer, base = make_layer(inputs["case"])
    base_ids = {id(p) for p in base.parameters()}
    own = [[name, list(p.shape)] for name, p in layer.named_parameters() if id(p) not in base_ids]
    layer.eval()
    set_matrices(layer, base, inputs["case"]["r"], inputs["case"]["A"], inputs["case"]["B"])
    with torch.no_grad():
        outputs = [plain(layer(tensor(x))) for x in inputs["xs"]]
    return {"own": own, "outputs": outputs}


def measure_init_equals_base(inputs):
    results = []
    for case in inputs["cases"]:
        layer, base = make_layer(case)
        layer.eval()
        _, b = lora_matrices(layer, base, case["r"])
        x = tensor(case["x"])
        with torch.no_grad():
            results.append({"b": plain(b), "out": plain(layer(x)), "base_out": plain(base(x))})
    return {"cases": results}


def _gradients(inputs):
    case = inputs["case"]
    layer, base = make_layer(case)
    layer.train()
    a, b = lora_matrices(layer, base, case["r"])
    out = layer(tensor(case["x"]))
    raw = {"a": plain(a), "b": plain(b), "out_requires_grad": bool(out.requires_grad), "b_requires_grad": bool(b.requires_grad)}
    if out.requires_grad:
        (out * tensor(case["g"])).sum().backward()
    return {**raw, "a_grad": plain(a.grad), "b_grad": plain(b.grad)}


measure_init_gradients = _gradients


def measure_init_gaussian(inputs):
    case = inputs["case"]
    torch.manual_seed(inputs["seed"])
    layer, base = make_layer(case, init="gaussian")
    a, b = lora_matrices(layer, base, case["r"])
    return {"a": plain(a), "b": plain(b)}


def _forward(case, **overrides):
    layer, base = make_layer(case, **overrides)
    layer.eval()
    set_matrices(layer, base, case["r"], case["A"], case["B"])
    with torch.no_grad():
        return plain(layer(tensor(case["x"])))


def measure_forward_formula(inputs):
    return {"outputs": [_forward(case) for case in inputs["cases"]]}


def measure_rslora_scaling(inputs):
    return {"outputs": [_forward(case, rslora=True) for case in inputs["cases"]]}


def measure_delta_weight(inputs):
    case = inputs["case"]
    layer, base = make_layer(case)
    set_matrices(layer, base, case["r"], case["A"], case["B"])
    return {"delta": plain(read_delta_weight(layer))}


def measure_delta_weight_graph(inputs):
    case = inputs["case"]
    layer, base = make_layer(case)
    a, b = set_matrices(layer, base, case["r"], case["A"], case["B"])
    if not callable(getattr(layer, "delta_weight", None)):
        raise Fail("LoRALinear has no delta_weight() method: keep it, it returns (alpha/r) B @ A")
    delta = layer.delta_weight()
    raw = {"requires_grad": bool(delta.requires_grad)}
    if delta.requires_grad:
        (delta * tensor(case["G"])).sum().backward()
    return {**raw, "a_grad": plain(a.grad), "b_grad": plain(b.grad)}


def measure_frozen_base(inputs):
    case = inputs["case"]
    layer, base = make_layer(case)
    layer.eval()
    a, b = set_matrices(layer, base, case["r"], case["A"], case["B"])
    others = [name for name, p in layer.named_parameters() if p.requires_grad and p is not a and p is not b]
    out = layer(tensor(case["x"]))
    if out.requires_grad:
        (out * tensor(case["g"])).sum().backward()
    return {"weight": base.weight.requires_grad, "bias": base.bias.requires_grad, "a": a.requires_grad, "b": b.requires_grad,
            "others": others, "weight_grad": plain(base.weight.grad), "bias_grad": plain(base.bias.grad),
            "a_grad": plain(a.grad), "b_grad": plain(b.grad)}


def _identity_a_twins(inputs, dropout):
    """Two layers on equal bases, lora_dropout `dropout` and 0, with r == in, A = I and the grader's B.

    With A = I the LoRA branch's input can be read back from its output; the
    dropout-free twin gives the student's own scaling, so a scaling mistake
    (graded elsewhere) does not also fail the dropout lines.
    """
    case = inputs["case"]
    layer, base = make_layer(case, dropout=dropout)
    twin, twin_base = make_layer(case)
    eye = torch.eye(case["r"]).tolist()
    set_matrices(layer, base, case["r"], eye, case["B"])
    set_matrices(twin, twin_base, case["r"], eye, case["B"])
    return layer, base, twin


def measure_dropout_placement(inputs):
    layer, base, twin = _identity_a_twins(inputs, inputs["p"])
    layer.train(), twin.train()
    x = tensor(inputs["case"]["x"])
    _, b = lora_matrices(layer, base, inputs["case"]["r"])
    with torch.no_grad():
        twin_out = twin(x)
        saved = b.detach().clone()
        b.zero_()
        frozen = layer(x)
        b.copy_(saved)
        out = layer(x)
        base_out = base(x)
    return {"twin_out": plain(twin_out), "frozen": plain(frozen), "out": plain(out), "base_out": plain(base_out)}


def measure_dropout_eval(inputs):
    layer, _, twin = _identity_a_twins(inputs, inputs["p"])
    layer.eval(), twin.eval()
    x = tensor(inputs["case"]["x"])
    with torch.no_grad():
        return {"out": plain(layer(x)), "twin_out": plain(twin(x))}


def _merge_setup(inputs):
    case = inputs["case"]
    layer, base = make_layer(case)
    layer.eval()
    set_matrices(layer, base, case["r"], case["A"], case["B"])
    return layer, base, tensor(case["x"])


def measure_merge_matches(inputs):
    layer, base, x = _merge_setup(inputs)
    with torch.no_grad():
        before = layer(x)
        layer.merge()
        after = layer(x)
    return {"before": plain(before), "after": plain(after), "weight": plain(base.weight), "bias": plain(base.bias)}


def measure_merge_idempotent(inputs):
    layer, base, _ = _merge_setup(inputs)
    layer.merge()
    once = plain(base.weight)
    layer.merge()
    return {"once": once, "twice": plain(base.weight)}


def measure_unmerge_restores(inputs):
    layer, base, x = _merge_setup(inputs)
    with torch.no_grad():
        before = layer(x)
    layer.unmerge()
    unmerged_first = plain(base.weight)
    layer.merge()
    layer.unmerge()
    restored = plain(base.weight)
    layer.unmerge()
    again = plain(base.weight)
    with torch.no_grad():
        after = layer(x)
    return {"unmerged_first": unmerged_first, "restored": restored, "again": again,
            "before": plain(before), "after": plain(after)}


def measure_dtype(inputs):
    case = inputs["case"]
    layer, base = make_layer(case, dtype=torch.float64)
    layer.eval()
    a, b = lora_matrices(layer, base, case["r"])
    dtypes = {"a": str(a.dtype), "b": str(b.dtype)}
    set_matrices(layer, base, case["r"], case["A"], case["B"])
    with torch.no_grad():
        out = layer(tensor(case["x"], torch.float64))
    layer.merge()
    return {**dtypes, "out": str(out.dtype), "merged_weight": str(base.weight.dtype), "values": out.tolist()}
