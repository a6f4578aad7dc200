"""The gallery: {name: Mutation(line that must fail, what the student did, patches)}.

A patch is (file under lora/, old text, new text), applied with str.replace to
a copy of the solution. The old text must occur exactly once, so a change to
the solution makes the gallery fail loudly instead of silently testing nothing.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

COPIED = ("lora", "minigpt")  # all the grader imports from a graded copy


@dataclass(frozen=True)
class Mutation:
    line: str  # the rubric line whose hint names this mistake
    mistake: str
    patches: tuple[tuple[str, str, str], ...]
    hint: str = ""  # words the failing line's message must contain (empty: any one-line message)


FORWARD = "return self.base(x) + self.scaling * self.lora_B(self.lora_A(self.lora_dropout(x)))"
FREEZE_BASE = "        for parameter in self.base.parameters():\n            parameter.requires_grad_(False)\n"
FREEZE_MODEL = "    for parameter in model.parameters():\n        parameter.requires_grad_(False)\n"

MUTATIONS = {
    "no_division_by_r": Mutation("forward_formula", "scaling = alpha, not alpha / r",
                                 (("layer.py", "self.scaling = lora_alpha / r", "self.scaling = lora_alpha"),)),
    "scaling_one": Mutation("forward_formula", "the update is never scaled",
                            (("layer.py", "self.scaling = lora_alpha / r", "self.scaling = 1.0"),)),
    "scaling_inverted": Mutation("forward_formula", "scaling = r / alpha",
                                 (("layer.py", "self.scaling = lora_alpha / r", "self.scaling = r / lora_alpha"),)),
    "b_random": Mutation("init_equals_base", "B initialised like A instead of to zero",
                         (("layer.py", "nn.init.zeros_(self.lora_B.weight)", "nn.init.normal_(self.lora_B.weight, std=0.02)"),)),
    "b_tiny": Mutation("init_equals_base", "B initialised with a tiny std (1e-8), not exactly zero",
                       (("layer.py", "nn.init.zeros_(self.lora_B.weight)", "nn.init.normal_(self.lora_B.weight, std=1e-8)"),), "exactly at zero"),
    "gaussian_a_zero": Mutation("init_gaussian", "the 'gaussian' branch leaves A at zero",
                                (("layer.py", "nn.init.normal_(self.lora_A.weight, std=1.0 / self.r)", "nn.init.zeros_(self.lora_A.weight)"),), "A stays zero"),
    "rslora_ignored": Mutation("rslora_scaling", "use_rslora accepted but the scaling stays alpha / r", (
        ("layer.py", "        if use_rslora:", "        if False:"),), "use_rslora=True is ignored"),
    "delta_detached": Mutation("delta_weight_graph", "delta_weight() detached from the autograd graph", (
        ("layer.py", "return self.scaling * (self.lora_B.weight @ self.lora_A.weight)",
         "return (self.scaling * (self.lora_B.weight @ self.lora_A.weight)).detach()"),), "cut from the autograd graph"),
    "merged_stays_frozen": Mutation("merged_trains", "merge_lora leaves every parameter frozen (requires_grad not restored)", (
        ("merge.py", "        parameter.requires_grad_(True)", "        pass"),), "stay frozen"),
    "lora_with_bias": Mutation("trainable_count", "A and B built as nn.Linear with a bias, which also trains", (
        ("layer.py", "nn.Linear(base.in_features, r, bias=False", "nn.Linear(base.in_features, r, bias=True"),
        ("layer.py", "nn.Linear(r, base.out_features, bias=False", "nn.Linear(r, base.out_features, bias=True"),
    ), "trainable parameters"),
    "branch_under_no_grad": Mutation("training_step", "the LoRA branch computed under torch.no_grad()", (
        ("layer.py", FORWARD, "with torch.no_grad():\n            update = self.scaling * self.lora_B(self.lora_A(self.lora_dropout(x)))\n"
                              "        return self.base(x) + update"),), "do gradients reach A and B"),
    "a_zero": Mutation("init_gradients", "A initialised to zero",
                       (("layer.py", "nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))", "nn.init.zeros_(self.lora_A.weight)"),)),
    "shapes_swapped": Mutation("shapes", "A stored (in, r) and B (r, out), with x @ A @ B", (
        ("layer.py", "nn.Linear(base.in_features, r, bias=False", "nn.Linear(r, base.in_features, bias=False"),
        ("layer.py", "nn.Linear(r, base.out_features, bias=False", "nn.Linear(base.out_features, r, bias=False"),
        ("layer.py", "self.lora_B.weight @ self.lora_A.weight", "(self.lora_A.weight @ self.lora_B.weight).T"),
        ("layer.py", FORWARD, "return self.base(x) + self.scaling * (self.lora_dropout(x) @ self.lora_A.weight @ self.lora_B.weight)"),
    )),
    "delta_transposed": Mutation("delta_weight", "delta_weight returns (A^T B^T), the transpose",
                                 (("layer.py", "self.lora_B.weight @ self.lora_A.weight", "self.lora_A.weight.T @ self.lora_B.weight.T"),)),
    "dropout_on_output": Mutation("dropout_placement", "dropout on the layer's output",
                                  (("layer.py", FORWARD, "return self.lora_dropout(self.base(x) + self.scaling * self.lora_B(self.lora_A(x)))"),)),
    "dropout_on_frozen_path": Mutation("dropout_placement", "x = dropout(x) before both paths", (
        ("layer.py", FORWARD, "x = self.lora_dropout(x)\n        return self.base(x) + self.scaling * self.lora_B(self.lora_A(x))"),)),
    "dropout_active_in_eval": Mutation("dropout_eval", "F.dropout without training=self.training", (
        ("layer.py", FORWARD, "return self.base(x) + self.scaling * self.lora_B(self.lora_A("
                              "nn.functional.dropout(x, getattr(self.lora_dropout, 'p', 0.0))))"),)),
    "branch_detached": Mutation("init_gradients", "the LoRA branch is .detach()ed", (
        ("layer.py", FORWARD, FORWARD.replace("(x)))", "(x))).detach()")),)),
    "base_weight_trainable": Mutation("frozen_base", "only the bias is frozen", (
        ("layer.py", FREEZE_BASE, "        base.bias.requires_grad_(False)\n"),)),
    "bias_trainable": Mutation("frozen_base", "only the weight is frozen", (
        ("layer.py", FREEZE_BASE, "        base.weight.requires_grad_(False)\n"),)),
    "merge_without_scaling": Mutation("merge_matches", "merge adds B A, not (alpha/r) B A", (
        ("layer.py", "self.base.weight += self.delta_weight()", "self.base.weight += self.lora_B.weight @ self.lora_A.weight"),)),
    "merged_forward_adds_again": Mutation("merge_matches", "forward adds the update even when merged", (
        ("layer.py", "return self.base(x)  # the update already lives inside W",
         "return self.base(x) + self.scaling * self.lora_B(self.lora_A(x))"),)),
    "merge_twice_adds_twice": Mutation("merge_idempotent", "merge() ignores the merged flag", (
        ("layer.py", "        if self.merged:\n            return\n        self.base.weight +=", "        self.base.weight +="),)),
    "unmerge_adds": Mutation("unmerge_restores", "unmerge() adds the update again", (
        ("layer.py", "self.base.weight -= self.delta_weight()", "self.base.weight += self.delta_weight()"),)),
    "unmerge_ignores_flag": Mutation("unmerge_restores", "unmerge() subtracts even when not merged", (
        ("layer.py", "        if not self.merged:\n            return\n        self.base.weight -=", "        self.base.weight -="),)),
    "unmerge_loops_forever": Mutation("unmerge_restores", "unmerge() spins until the layer is merged: an infinite loop", (
        ("layer.py", "        if not self.merged:\n            return\n        self.base.weight -=",
         "        while not self.merged:\n            pass\n        self.base.weight -="),)),
    "unmerge_kills_the_process": Mutation("unmerge_restores", "debug prints in forward, and os._exit left in unmerge()", (
        ("layer.py", "        if not self.merged:\n            return\n        self.base.weight -=",
         "        import os\n        os._exit(3)\n        self.base.weight -="),
        ("layer.py", FORWARD, 'print("debug: forward", tuple(x.shape))\n        ' + FORWARD),
    )),
    "ab_default_dtype": Mutation("dtype", "A and B created in the default dtype", (
        ("layer.py", "nn.Linear(base.in_features, r, bias=False, device=device, dtype=dtype)",
         "nn.Linear(base.in_features, r, bias=False, device=device)"),
        ("layer.py", "nn.Linear(r, base.out_features, bias=False, device=device, dtype=dtype)",
         "nn.Linear(r, base.out_features, bias=False, device=device)"),
    )),
    "targets_ignored": Mutation("apply_targets", "every nn.Linear is wrapped", (
        ("apply.py", "    for name, linear in chosen.items():\n        layer = build_lora_layer",
         "    for name, linear in linears.items():\n        layer = build_lora_layer"),)),
    "apply_forgets_freezing": Mutation("apply_freezes", "apply_lora freezes nothing outside the wrapped layers", (
        ("apply.py", FREEZE_MODEL, ""),)),
    "freeze_after_wrapping": Mutation("apply_freezes", "the model is frozen after wrapping, A and B too", (
        ("apply.py", FREEZE_MODEL + "    wrapped = {}\n", "    wrapped = {}\n"),
        ("apply.py", "    return wrapped\n", FREEZE_MODEL + "    return wrapped\n"),
    )),
    "merged_keeps_lora_modules": Mutation("merged_plain", "merge_lora merges but keeps the LoRALinear modules", (
        ("merge.py", "        set_submodule(merged, name, layer.base)\n", ""),)),
    "merge_lora_in_place": Mutation("merged_plain", "merge_lora merges the model it was given", (
        ("merge.py", "merged = copy.deepcopy(model)", "merged = model"),)),
    "merge_lora_missing": Mutation("merged_plain", "merge_lora renamed (missing)", (
        ("merge.py", "def merge_lora(", "def merge_lora_model("),)),
}


class GalleryError(AssertionError):
    """The solution no longer contains a patch's old text: update the gallery."""


def build_wrong_copy(solution_root: Path, destination: Path, name: str) -> Path:
    """Copy lora/ and minigpt/ from solution_root into destination and apply mutation `name`."""
    for package in COPIED:
        shutil.copytree(solution_root / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new in MUTATIONS[name].patches:
        path = destination / "lora" / file
        text = path.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise GalleryError(f"gallery {name}: lora/{file} contains {text.count(old)} copies of {old!r}, expected 1")
        path.write_text(text.replace(old, new), encoding="utf-8")
    return destination
