"""Rubric checks on whole models: apply_lora's targets and freezing, merge_lora, one training step.

Targeting is checked on a small model of our own (no weight tying, a
non-square layer, a name that merely contains a target); merging and training
on a tiny MiniGPT, whose plain state dict the merged model must load into.
"""

import torch
import torch.nn as nn

from coursework.probes import Fail, lora_matrices, max_error, randomize

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


def _apply(model: nn.Module, r: int, targets: list[str]) -> dict:
    from lora.apply import apply_lora
    from lora.config import LoRAConfig

    return apply_lora(model, LoRAConfig(r=r, lora_alpha=2.0 * r, target_modules=targets))


def _linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if type(m) is nn.Linear}


def _tiny_gpt(seed: int = 0):
    from minigpt.config import GPTConfig
    from minigpt.model import MiniGPT

    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(**TINY_GPT)), GPTConfig(**TINY_GPT)


def check_apply_targets():
    torch.manual_seed(0)
    model = ToyModel()
    before = _linears(model)
    wrapped = _apply(model, 2, ["q_proj", "up_proj"])
    expected = {f"blocks.{i}.{name}" for i in range(2) for name in ("q_proj", "up_proj")}
    if not isinstance(wrapped, dict) or set(wrapped) != expected:
        got = set(wrapped) if isinstance(wrapped, dict) else type(wrapped).__name__
        extra = sorted(set(got) - expected) if isinstance(got, set) else got
        missing = sorted(expected - set(got)) if isinstance(got, set) else []
        raise Fail(f"apply_lora must return {{name: LoRA layer}} for exactly the targeted layers; "
                   f"wrapped but not targeted: {extra}; targeted but not wrapped: {missing}")
    for name, layer in wrapped.items():
        if model.get_submodule(name) is not layer:
            raise Fail(f"{name} was not replaced in the model: apply_lora must put the LoRA layer in its place")
    untouched = {name: m for name, m in before.items() if name not in expected}
    for name, linear in untouched.items():
        if model.get_submodule(name) is not linear:
            raise Fail(f"{name} is not a target, yet apply_lora replaced it: wrap only the layers whose names end with a target")


def check_apply_freezes():
    torch.manual_seed(0)
    model = ToyModel()
    bases = _linears(model)
    wrapped = _apply(model, 2, ["q_proj", "up_proj"])
    lora_ids = set()
    for name, layer in wrapped.items():
        a, b = lora_matrices(layer, bases[name], 2)
        if not (a.requires_grad and b.requires_grad):
            raise Fail(f"after apply_lora A and B of {name} must be trainable (did you freeze after wrapping?)")
        lora_ids |= {id(a), id(b)}
    still = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in lora_ids]
    if still:
        raise Fail(f"apply_lora must freeze every parameter but A and B; still trainable: {', '.join(still[:4])}"
                   + (" ..." if len(still) > 4 else ""))


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad)


def check_trainable_count():
    model, config = _tiny_gpt()
    _apply(model, 2, ["q_proj", "k_proj", "v_proj", "o_proj"])
    expected = config.n_layer * 4 * 2 * (config.n_embd + config.n_embd)
    if _trainable(model) != expected:
        raise Fail(f"MiniGPT with r=2 on q/k/v/o: {_trainable(model)} trainable parameters, "
                   f"expected n_layer * 4 * r * (in + out) = {expected}")
    toy = ToyModel()
    _apply(toy, 3, ["up_proj"])
    expected = 2 * 3 * (8 + 12)
    if _trainable(toy) != expected:
        raise Fail(f"two 8->12 layers with r=3: {_trainable(toy)} trainable parameters, expected 2 * r * (8 + 12) = {expected}")


def check_merged_plain():
    from lora.merge import merge_lora
    from minigpt.model import MiniGPT

    model, config = _tiny_gpt()
    bases = _linears(model)
    wrapped = _apply(model, 2, ["q_proj", "v_proj", "up_proj"])
    for seed, (name, layer) in enumerate(wrapped.items()):
        randomize(layer, bases[name], 2, std=0.2, seed=seed)
    model.eval()
    idx = torch.randint(config.vocab_size, (3, config.block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lora_logits = model(idx)[0]
    merged = merge_lora(model)
    plain_types = {type(m) for m in MiniGPT(config).modules()}
    for name, module in merged.named_modules():
        if type(module) not in plain_types:
            raise Fail(f"the merged model still holds {type(module).__name__} at {name or '(model)'}: "
                       "replace each LoRA layer by its merged base nn.Linear")
    with torch.no_grad():
        if any(model.get_submodule(name) is not layer for name, layer in wrapped.items()) \
                or max_error(model(idx)[0], lora_logits) > 1e-6:
            raise Fail("merge_lora changed the model passed in: merge a deep copy and leave the LoRA model as it was")
    fresh = MiniGPT(config)
    try:
        fresh.load_state_dict(merged.state_dict(), strict=True)
    except RuntimeError as error:
        raise Fail(f"the merged state dict does not load strictly into a plain MiniGPT: {str(error).splitlines()[0]}") from None
    fresh.eval()
    with torch.no_grad():
        error = max_error(fresh(idx)[0], lora_logits)
    if error > 1e-4:
        raise Fail(f"the merged model's logits differ from the LoRA model's by {error:.2e}")


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


def check_training_step():
    model, config = _tiny_gpt()
    originals = list(model.named_parameters())
    saved = [p.detach().clone() for _, p in originals]
    _apply(model, 4, ["q_proj", "k_proj", "v_proj", "o_proj"])
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise Fail("after apply_lora nothing is trainable: A and B must require grad")
    optimizer = HandWrittenAdamW(trainable, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    idx = torch.randint(config.vocab_size, (4, config.block_size), generator=generator)
    targets = torch.randint(config.vocab_size, (4, config.block_size), generator=generator)
    losses = []
    for _ in range(5):
        _, loss = model(idx, targets)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = [name for (name, p), copy in zip(originals, saved) if not torch.equal(p.detach(), copy)]
    if changed:
        raise Fail(f"training changed frozen base parameters: {', '.join(changed[:3])}: only A and B may change")
    if not losses[-1] < losses[0] - 1e-4:
        raise Fail(f"5 AdamW steps on one fixed batch did not lower the loss ({losses[0]:.4f} -> {losses[-1]:.4f}): "
                   "do gradients reach A and B?")
