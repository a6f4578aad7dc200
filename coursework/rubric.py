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
    RubricLine("shapes", 5, "A is (r, in_features), B is (out_features, r); the layer maps (..., in) to (..., out)"),
    RubricLine("init_equals_base", 8, "right after construction the layer computes exactly what its base layer computes"),
    RubricLine("init_gradients", 8, "at step 0, A's gradient is exactly zero and B's is not"),
    RubricLine("forward_formula", 12, "h = W x + b + (alpha/r) B A x, for several (r, alpha) and non-square layers"),
    RubricLine("delta_weight", 5, "delta_W = (alpha/r) B A, shaped like W, of rank at most r"),
    RubricLine("frozen_base", 6, "the base weight and bias are frozen; A and B are the layer's only trainable parameters"),
    RubricLine("dropout_placement", 6, "in train mode, dropout acts on the LoRA branch's input only"),
    RubricLine("dropout_eval", 4, "in eval mode, dropout is off"),
    RubricLine("merge_matches", 8, "after merge(), W = W + (alpha/r) B A, the bias is untouched and the output is unchanged"),
    RubricLine("merge_idempotent", 5, "a second merge() changes nothing"),
    RubricLine("unmerge_restores", 5, "unmerge() restores W within 1e-6; on an unmerged layer it does nothing"),
    RubricLine("apply_targets", 6, "apply_lora wraps exactly the layers whose names end with a target, in place"),
    RubricLine("apply_freezes", 4, "after apply_lora only the A and B matrices are trainable"),
    RubricLine("trainable_count", 4, "the trainable parameter count is r * (in + out) per adapted layer"),
    RubricLine("merged_plain", 6, "merge_lora returns a copy with no LoRA modules that loads strictly into a plain MiniGPT"),
    RubricLine("dtype", 4, "A and B take the base layer's dtype (a float64 base works)"),
    RubricLine("training_step", 4, "AdamW steps on a fixed batch lower the loss and leave every base parameter bit-identical"),
)

POINTS = {line.id: line.points for line in RUBRIC}
MAX_SCORE = sum(POINTS.values())
assert MAX_SCORE == 100, MAX_SCORE
