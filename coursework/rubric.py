"""The rubric: one line per behaviour a correct LoRA implementation must have.

The ids are stable: grade.json, ASSIGNMENT.md's rubric table and the gallery
of wrong implementations all refer to them. Points add up to 100.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class RubricLine:
    id: str
    points: int
    checks: str  # what a passing implementation does, in one sentence


RUBRIC = (
    RubricLine("shapes", 4, "A is (r, in_features), B is (out_features, r); the layer maps (..., in) to (..., out)"),
    RubricLine("init_equals_base", 6, "right after construction B is exactly zero and the layer computes what its base layer computes"),
    RubricLine("init_gradients", 6, "at step 0, A's gradient is exactly zero and B's is s g (A x)^T, not zero"),
    RubricLine("init_gaussian", 4, "init_lora_weights='gaussian' draws A from a normal with std 1/r, and B is zero"),
    RubricLine("forward_formula", 11, "h = W x + b + (alpha/r) B A x, for several (r, alpha) and non-square layers"),
    RubricLine("rslora_scaling", 5, "with use_rslora=True the update is scaled by alpha/sqrt(r)"),
    RubricLine("delta_weight", 5, "delta_W = (alpha/r) B A, shaped like W, of rank at most r"),
    RubricLine("delta_weight_graph", 4, "delta_weight() keeps the autograd graph: a loss on it sends gradients to A and B"),
    RubricLine("frozen_base", 5, "the base weight and bias are frozen; A and B are the layer's only trainable parameters"),
    RubricLine("dropout_placement", 5, "in train mode, dropout acts on the LoRA branch's input only"),
    RubricLine("dropout_eval", 3, "in eval mode, dropout is off"),
    RubricLine("merge_matches", 6, "after merge(), W = W + (alpha/r) B A, the bias is untouched and the output is unchanged"),
    RubricLine("merge_idempotent", 4, "a second merge() changes nothing"),
    RubricLine("unmerge_restores", 4, "unmerge() restores W within 1e-6; on an unmerged layer it does nothing"),
    RubricLine("apply_targets", 5, "apply_lora wraps exactly the layers whose names end with a target, in place"),
    RubricLine("apply_freezes", 4, "after apply_lora only the A and B matrices are trainable"),
    RubricLine("trainable_count", 3, "the trainable parameter count is r * (in + out) per adapted layer"),
    RubricLine("merged_plain", 5, "merge_lora returns a copy with no LoRA modules that loads strictly into a plain MiniGPT"),
    RubricLine("merged_trains", 4, "every parameter of the merged model trains again (requires_grad restored)"),
    RubricLine("dtype", 3, "A and B take the base layer's dtype (a float64 base works)"),
    RubricLine("training_step", 4, "AdamW steps on a fixed batch lower the loss and leave every base parameter bit-identical"),
)

# Judged on names, counts and flags rather than on numbers computed from the grader's random inputs:
# code written against the worker's protocol could forge these (INSTRUCTORS.md, "What the grader guarantees").
STRUCTURE_LINES = ("init_equals_base", "apply_freezes", "trainable_count", "training_step")

POINTS = {line.id: line.points for line in RUBRIC}
MAX_SCORE = sum(POINTS.values())
assert MAX_SCORE == 100, MAX_SCORE
assert set(STRUCTURE_LINES) <= set(POINTS)
