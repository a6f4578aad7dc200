"""Worker side: apply_lora, merge_lora and a training step on models the grader chose; raw results only.

Targeting is measured on a small model of our own (no weight tying, a
non-square layer, a name that merely contains a target); merging and training
on a tiny MiniGPT (the instructor's minigpt, never the submission's), whose
plain state dict the merged model must load into.
"""

import torch
import torch.nn as nn

from coursework.probes import lora_matrices, plain, set_matrices

TINY_GPT = dict(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


class ToyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.extra_q_proj = nn.Linear(8, 8)  # "q_proj" is only a part of its name: never a target
        self.up_proj = nn.Linear(8, 12)
        self.norm = nn.LayerNorm(8)


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(11, 8)
        self.blocks = nn.ModuleList(ToyBlock() for _ in range(2))
        self.head = nn.Linear(8, 5)


def _apply(model: nn.Module, r: int, targets: list[str]):
    from lora.apply import apply_lora
    from lora.config import LoRAConfig

    return apply_lora(model, LoRAConfig(r=r, lora_alpha=2.0 * r, target_modules=targets))


def _linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if type(m) is nn.Linear}


def _tiny_gpt(seed: int):
    from minigpt.config import GPTConfig
    from minigpt.model import MiniGPT

    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(**TINY_GPT)), GPTConfig(**TINY_GPT)


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad)


def measure_apply_targets(inputs):
    torch.manual_seed(inputs["seed"])
    model = ToyModel()
    before = _linears(model)
    wrapped = _apply(model, 2, inputs["targets"])
    if not isinstance(wrapped, dict):
        return {"returned": type(wrapped).__name__}
    outputs = {}  # every original layer's place, run on the grader's x, with the grader's A and B where LoRA sits
    for name, linear in before.items():
        module = model.get_submodule(name)
        if module is not linear and name in inputs["matrices"]:
            set_matrices(module, linear, 2, inputs["matrices"][name]["A"], inputs["matrices"][name]["B"])
        with torch.no_grad():
            outputs[name] = plain(module.eval()(torch.tensor(inputs["x"])))
    return {"returned": sorted(str(name) for name in wrapped),
            "not_in_place": sorted(name for name, layer in wrapped.items() if model.get_submodule(name) is not layer),
            "replaced": sorted(name for name, linear in before.items()
                               if name not in wrapped and model.get_submodule(name) is not linear),
            "outputs": outputs}


def measure_apply_freezes(inputs):
    torch.manual_seed(inputs["seed"])
    model = ToyModel()
    bases = _linears(model)
    wrapped = _apply(model, 2, inputs["targets"])
    lora_ids, frozen_ab = set(), []
    for name, layer in wrapped.items():
        a, b = lora_matrices(layer, bases[name], 2)
        if not (a.requires_grad and b.requires_grad):
            frozen_ab.append(name)
        lora_ids |= {id(a), id(b)}
    still = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in lora_ids]
    return {"frozen_ab": frozen_ab, "still_trainable": still}


def measure_trainable_count(inputs):
    model, _ = _tiny_gpt(inputs["seed"])
    _apply(model, 2, ["q_proj", "k_proj", "v_proj", "o_proj"])
    toy = ToyModel()
    _apply(toy, 3, ["up_proj"])
    return {"gpt": _trainable(model), "toy": _trainable(toy)}


def _merged(inputs):
    """(LoRA model, its merge_lora result, LoRA logits, wrapped layers) with the grader's A and B."""
    from lora.merge import merge_lora

    model, config = _tiny_gpt(inputs["seed"])
    bases = _linears(model)
    wrapped = _apply(model, 2, ["q_proj", "v_proj", "up_proj"])
    for name, layer in wrapped.items():
        matrices = inputs["matrices"][name]
        set_matrices(layer, bases[name], 2, matrices["A"], matrices["B"])
    model.eval()
    idx = torch.tensor(inputs["idx"])
    with torch.no_grad():
        lora_logits = model(idx)[0]
    return model, merge_lora(model), lora_logits, wrapped, idx, config


def measure_merged_plain(inputs):
    from minigpt.model import MiniGPT

    model, merged, lora_logits, wrapped, idx, config = _merged(inputs)
    plain_types = {type(m) for m in MiniGPT(config).modules()}
    foreign = [[name or "(model)", type(m).__name__] for name, m in merged.named_modules() if type(m) not in plain_types]
    with torch.no_grad():
        untouched = all(model.get_submodule(name) is layer for name, layer in wrapped.items())
        after_logits = model(idx)[0]
    fresh, load_error, merged_logits = MiniGPT(config), None, None
    try:
        fresh.load_state_dict(merged.state_dict(), strict=True)
        fresh.eval()
        with torch.no_grad():
            merged_logits = plain(fresh(idx)[0])
    except RuntimeError as error:
        load_error = str(error).splitlines()[0]
    return {"foreign": foreign, "input_modules_untouched": untouched, "lora_logits": plain(lora_logits),
            "input_logits_after": plain(after_logits), "load_error": load_error, "merged_logits": merged_logits}


def measure_merged_trains(inputs):
    _, merged, _, _, idx, _ = _merged(inputs)
    frozen = [name for name, p in merged.named_parameters() if not p.requires_grad]
    merged.train()
    _, loss = merged(idx, torch.tensor(inputs["targets"]))
    no_gradient, gradients = [], {}
    if loss.requires_grad:
        loss.backward()
        no_gradient = [name for name, p in merged.named_parameters() if p.grad is None]
        gradients = {name: plain(p.grad) for name, p in merged.named_parameters() if p.grad is not None}
    return {"frozen": frozen, "loss_requires_grad": bool(loss.requires_grad), "no_gradient": no_gradient,
            "weights": {name: plain(p) for name, p in merged.named_parameters()}, "gradients": gradients}


class HandWrittenAdamW:
    """AdamW (Loshchilov & Hutter, 2019), as torch.optim.AdamW computes it with its defaults.

    Written out because constructing any torch.optim optimizer imports
    torch._dynamo, about 3 s per grading process; this is the same update.
    """

    def __init__(self, parameters, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        self.parameters, self.lr, self.betas, self.eps, self.weight_decay = list(parameters), lr, betas, eps, weight_decay
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.parameters]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        for p, (mean, square) in zip(self.parameters, self.moments):
            if p.grad is None:
                continue
            p.mul_(1 - self.lr * self.weight_decay)  # decoupled weight decay
            mean.lerp_(p.grad, 1 - beta1)
            square.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            mean_hat = mean / (1 - beta1 ** self.steps)
            square_hat = square / (1 - beta2 ** self.steps)
            p.addcdiv_(mean_hat, square_hat.sqrt().add_(self.eps), value=-self.lr)


def measure_training_step(inputs):
    model, _ = _tiny_gpt(inputs["seed"])
    originals = list(model.named_parameters())
    saved = [p.detach().clone() for _, p in originals]
    _apply(model, 4, ["q_proj", "k_proj", "v_proj", "o_proj"])
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    losses = []
    if trainable:
        optimizer = HandWrittenAdamW(trainable, lr=1e-2)
        idx, targets = torch.tensor(inputs["idx"]), torch.tensor(inputs["targets"])
        for _ in range(5):
            _, loss = model(idx, targets)
            losses.append(loss.item())
            if not loss.requires_grad:  # nothing reaches A and B: report it rather than crash in backward
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    changed = [name for (name, p), copy in zip(originals, saved) if not torch.equal(p.detach(), copy)]
    return {"trainable": len(trainable), "losses": losses, "changed": changed}
