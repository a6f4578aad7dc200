"""Grader side: the model-level rubric lines (apply_lora, merge_lora, a training step), judged from raw results."""

import threading

import torch

from coursework.judging import Malformed, fitted_factor, flag, matrix, max_error, names, number, tensor
from coursework.measure_model import TINY_GPT
from coursework.probes import Fail

TARGETS = ["q_proj", "up_proj"]
EXPECTED_TARGETS = sorted(f"blocks.{i}.{name}" for i in range(2) for name in TARGETS)
MERGED_LAYERS = [f"blocks.{i}.{part}" for i in range(2) for part in ("attention.q_proj", "attention.v_proj", "feed_forward.up_proj")]
TINY = TINY_GPT
SEEDING = threading.Lock()  # torch.manual_seed is global; graders in parallel threads take turns


def expected_merged_logits(inputs) -> torch.Tensor:
    """The logits of the tiny MiniGPT with W + (alpha/r) B A in each adapted layer, computed here (no student code)."""
    from minigpt.config import GPTConfig
    from minigpt.model import MiniGPT

    with SEEDING:
        torch.manual_seed(inputs["seed"])
        model = MiniGPT(GPTConfig(**TINY_GPT))
    with torch.no_grad():
        for name, matrices in inputs["matrices"].items():
            weight = model.get_submodule(name).weight
            weight += (2.0 * tensor(matrices["B"]) @ tensor(matrices["A"])).to(weight.dtype)  # alpha = 2r
        return model.eval()(torch.tensor(inputs["idx"]))[0].double()


TOY_LINEARS = [f"blocks.{i}.{name}" for i in range(2) for name in ("q_proj", "k_proj", "v_proj", "extra_q_proj", "up_proj")] + ["head"]
TOY_OUT = {"up_proj": 12, "head": 5}


def inputs_apply_targets(draw):
    matrices = {name: {"A": draw.normal(2, 8, std=0.5), "B": draw.normal(TOY_OUT.get(name.rpartition(".")[2], 8), 2, std=0.5)}
                for name in EXPECTED_TARGETS}
    return {"seed": draw.seed(), "targets": TARGETS, "matrices": matrices, "x": draw.normal(5, 8)}


def _toy_linears(seed: int) -> dict:
    from coursework.measure_model import ToyModel

    with SEEDING:
        torch.manual_seed(seed)
        model = ToyModel()
    return {name: model.get_submodule(name) for name in TOY_LINEARS}


def judge_apply_targets(inputs, raw):
    returned = raw.get("returned")
    if not isinstance(returned, list):
        raise Fail(f"apply_lora must return {{name: LoRA layer}}, got {returned if isinstance(returned, str) else 'something else'}")
    if sorted(returned) != EXPECTED_TARGETS:
        raise Fail("apply_lora must return {name: LoRA layer} for exactly the targeted layers; "
                   f"wrapped but not targeted: {sorted(set(returned) - set(EXPECTED_TARGETS))}; "
                   f"targeted but not wrapped: {sorted(set(EXPECTED_TARGETS) - set(returned))}")
    not_in_place = names(raw, "not_in_place")
    if not_in_place:
        raise Fail(f"{not_in_place[0]} was not replaced in the model: apply_lora must put the LoRA layer in its place")
    replaced = names(raw, "replaced")
    if replaced:
        raise Fail(f"{replaced[0]} is not a target, yet apply_lora replaced it: wrap only the layers whose names end with a target")
    outputs = raw.get("outputs")
    if not isinstance(outputs, dict) or sorted(outputs) != sorted(TOY_LINEARS):
        raise Malformed("the worker's result for 'outputs' does not name the model's layers")
    x = tensor(inputs["x"])
    for name, linear in _toy_linears(inputs["seed"]).items():
        with torch.no_grad():
            frozen = x @ linear.weight.double().T + linear.bias.double()
        got = matrix(outputs, name, (5, linear.out_features))
        if name not in EXPECTED_TARGETS:
            if max_error(got, frozen) > 1e-5:
                raise Fail(f"{name} is not a target, yet its output changed: leave the other layers as they were")
            continue
        bax = x @ tensor(inputs["matrices"][name]["A"]).T @ tensor(inputs["matrices"][name]["B"]).T
        factor = fitted_factor(got - frozen, bax)  # the scaling is forward_formula's business: any non-zero factor
        if not abs(factor) > 1e-6 or max_error(got - frozen, factor * bax) > 1e-4 * max(1.0, bax.abs().max().item()):
            raise Fail(f"in the model, {name} does not compute W x + b + s B A x: wrap the layer that was there, in its place")


inputs_apply_freezes = inputs_apply_targets


def judge_apply_freezes(inputs, raw):
    frozen_ab = names(raw, "frozen_ab")
    if frozen_ab:
        raise Fail(f"after apply_lora A and B of {frozen_ab[0]} must be trainable (did you freeze after wrapping?)")
    still = names(raw, "still_trainable")
    if still:
        raise Fail(f"apply_lora must freeze every parameter but A and B; still trainable: {', '.join(still[:4])}"
                   + (" ..." if len(still) > 4 else ""))


def inputs_trainable_count(draw):
    return {"seed": draw.seed()}


def judge_trainable_count(inputs, raw):
    gpt, toy = number(raw, "gpt"), number(raw, "toy")
    expected = TINY["n_layer"] * 4 * 2 * (TINY["n_embd"] + TINY["n_embd"])
    if gpt != expected:
        raise Fail(f"MiniGPT with r=2 on q/k/v/o: {gpt:.0f} trainable parameters, expected n_layer * 4 * r * (in + out) = {expected}")
    if toy != 2 * 3 * (8 + 12):
        raise Fail(f"two 8->12 layers with r=3: {toy:.0f} trainable parameters, expected 2 * r * (8 + 12) = {2 * 3 * 20}")


def inputs_merged_plain(draw):
    shapes = {"q_proj": (16, 16), "v_proj": (16, 16), "up_proj": (64, 16)}
    matrices = {name: {"A": draw.normal(2, shapes[name.rpartition(".")[2]][1], std=0.2),
                       "B": draw.normal(shapes[name.rpartition(".")[2]][0], 2, std=0.2)} for name in MERGED_LAYERS}
    return {"seed": draw.seed(), "matrices": matrices, "idx": draw.integers(TINY["vocab_size"], 3, TINY["block_size"])}


def inputs_merged_trains(draw):
    return {**inputs_merged_plain(draw), "targets": draw.integers(TINY["vocab_size"], 3, TINY["block_size"])}


def judge_merged_plain(inputs, raw):
    foreign = raw.get("foreign")
    if not isinstance(foreign, list):
        raise Malformed("the worker's result for 'foreign' is not a list")
    if foreign:
        name, kind = (foreign[0] + ["?", "?"])[:2] if isinstance(foreign[0], list) else ("?", "?")
        raise Fail(f"the merged model still holds {kind} at {name}: replace each LoRA layer by its merged base nn.Linear")
    logits_shape = (3, TINY["block_size"], TINY["vocab_size"])
    lora_logits = matrix(raw, "lora_logits", logits_shape)
    if not flag(raw, "input_modules_untouched") or max_error(matrix(raw, "input_logits_after", logits_shape), lora_logits) > 1e-6:
        raise Fail("merge_lora changed the model passed in: merge a deep copy and leave the LoRA model as it was")
    if raw.get("load_error") is not None:
        raise Fail(f"the merged state dict does not load strictly into a plain MiniGPT: {str(raw['load_error'])[:200]}")
    expected = expected_merged_logits(inputs)
    if max_error(lora_logits, expected) > 1e-4:
        raise Fail("the LoRA model's logits are not those of W + (alpha/r) B A in each adapted layer, so merging cannot be checked")
    error = max_error(matrix(raw, "merged_logits", logits_shape), lora_logits)
    if error > 1e-4:
        raise Fail(f"the merged model's logits differ from the LoRA model's by {error:.2e}")


def judge_merged_trains(inputs, raw):
    frozen = names(raw, "frozen")
    if frozen:
        raise Fail(f"the merged model's parameters stay frozen ({', '.join(frozen[:3])}{' ...' if len(frozen) > 3 else ''}): "
                   "merge_lora returns a plain model, so set requires_grad=True on every parameter again")
    if not flag(raw, "loss_requires_grad") or names(raw, "no_gradient"):
        raise Fail("a loss on the merged model does not reach all its parameters: it must train like a freshly loaded model")
    check_merged_gradients(inputs, raw)


def check_merged_gradients(inputs, raw) -> None:
    """The worker's gradients are those of its own merged weights, which hold W + c B A in each adapted layer."""
    from minigpt.config import GPTConfig
    from minigpt.model import MiniGPT

    weights, gradients = raw.get("weights"), raw.get("gradients")
    with SEEDING:
        torch.manual_seed(inputs["seed"])
        model = MiniGPT(GPTConfig(**TINY_GPT))
    expected_names = [name for name, _ in model.named_parameters()]
    if not isinstance(weights, dict) or not isinstance(gradients, dict) or sorted(weights) != sorted(expected_names) \
            or sorted(gradients) != sorted(expected_names):
        raise Fail("the merged model's parameters are not a plain MiniGPT's, so its training cannot be checked")
    original = {name: p.detach().double() for name, p in model.named_parameters()}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(matrix(weights, name, tuple(p.shape)))
    for name, matrices in inputs["matrices"].items():
        change = matrix(weights, f"{name}.weight") - original[f"{name}.weight"]
        bax = tensor(matrices["B"]) @ tensor(matrices["A"])
        factor = fitted_factor(change, bax)
        if not abs(factor) > 1e-6 or max_error(change, factor * bax) > 1e-4:
            raise Fail(f"the merged {name} is not W + s B A, so its training cannot be checked")
    _, loss = model.train()(torch.tensor(inputs["idx"]), torch.tensor(inputs["targets"]))
    loss.backward()
    for name, p in model.named_parameters():
        got = matrix(gradients, name, tuple(p.shape))
        if max_error(got, p.grad.double()) > 1e-4 * max(1.0, p.grad.abs().max().item()):
            raise Fail(f"the merged model's gradient for {name} is not the one its weights give: it must train like a plain MiniGPT")


def inputs_training_step(draw):
    return {"seed": draw.seed(), "idx": draw.integers(TINY["vocab_size"], 4, TINY["block_size"]),
            "targets": draw.integers(TINY["vocab_size"], 4, TINY["block_size"])}


def judge_training_step(inputs, raw):
    if number(raw, "trainable") == 0:
        raise Fail("after apply_lora nothing is trainable: A and B must require grad")
    changed = names(raw, "changed")
    if changed:
        raise Fail(f"training changed frozen base parameters: {', '.join(changed[:3])}: only A and B may change")
    losses = raw.get("losses")
    if not isinstance(losses, list) or not 1 <= len(losses) <= 5 or not all(isinstance(v, (int, float)) for v in losses):
        raise Malformed("the worker's result for 'losses' is not up to five numbers")
    if len(losses) < 5:
        raise Fail("the loss does not depend on A and B through autograd, so training cannot lower it: "
                   "do gradients reach A and B? (a torch.no_grad() or .detach() in forward?)")
    if not losses[-1] < losses[0] - 1e-4:
        raise Fail(f"5 AdamW steps on one fixed batch did not lower the loss ({losses[0]:.4f} -> {losses[-1]:.4f}): "
                   "do gradients reach A and B?")
