"""The intrinsic rank of full fine-tuning: is the update ΔW = W_after - W_before low-rank?

LoRA bets that it is (Hu et al., 2021, section 4.1; section 7 measures it on
GPT-3). Biderman et al. (2024, "LoRA Learns Less and Forgets Less", section 4.5
of the TMLR version, arXiv:2405.09673v2: "Full finetuning on code and math does
not learn low-rank perturbations") found, from the singular values of the
update, that full fine-tuning of a 7B model learns updates whose rank for 90%
of the variance is 10 to 100 times typical LoRA ranks.
Here: for every attention and MLP matrix, the singular values of ΔW, the rank
needed to hold 90% of its energy (sum of squared singular values), and the
share of that energy a rank-4 truncation keeps; the same for LoRA's merged
update. AdamW's weight decay also shrinks W itself, a full-rank change along W,
so the share of ΔW lying along W is reported too.
"""

import torch

from minigpt.checkpoint import load_model_dir
from minigpt.plumbing.errors import UserError


def spectrum(delta: torch.Tensor, energy: float = 0.9, keep_rank: int = 4) -> dict:
    """Singular values of `delta` (float64), the rank for `energy` of ||delta||_F^2 and the share a rank-keep_rank truncation keeps."""
    values = torch.linalg.svdvals(delta.double())
    squares = values**2
    total = squares.sum().item()
    if total == 0:
        return {"singular_values": values.tolist(), "norm": 0.0, "rank_for_energy": 0, "kept_by_rank": 1.0, "numerical_rank": 0}
    cumulative = torch.cumsum(squares, 0) / total
    rank_for_energy = int((cumulative < energy - 1e-12).sum().item()) + 1
    tolerance = values[0].item() * max(delta.shape) * torch.finfo(torch.float32).eps
    return {"singular_values": values.tolist(), "norm": total**0.5, "rank_for_energy": rank_for_energy,
            "kept_by_rank": cumulative[min(keep_rank, len(values)) - 1].item(),
            "numerical_rank": int((values > tolerance).sum().item())}


def share_along(delta: torch.Tensor, weight: torch.Tensor) -> float:
    """cos^2 between ΔW and W: the share of ||ΔW||^2 that is a rescaling of W (what weight decay does)."""
    delta, weight = delta.double().flatten(), weight.double().flatten()
    denominator = (delta @ delta) * (weight @ weight)
    return ((delta @ weight) ** 2 / denominator).item() if denominator > 0 else 0.0


def block_matrices(model) -> dict[str, torch.Tensor]:
    """Every attention and MLP weight matrix, by name."""
    return {name: module.weight.detach() for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.startswith("blocks.")}


def intrinsic_rank(pretrained: str, results: str, energy: float = 0.9, keep_rank: int = 4) -> dict:
    """{method: {matrix: spectrum + share along W}} for full fine-tuning and LoRA's merged model, from the saved weights."""
    base, _ = load_model_dir(pretrained, hint="run python train_pretrain.py first")
    before = block_matrices(base)
    generator = torch.Generator().manual_seed(0)
    report = {"energy": energy, "keep_rank": keep_rank, "methods": {}}
    for method, directory in (("full fine-tuning", "full_finetune"), ("LoRA (merged)", "lora_merged")):
        model, _ = load_model_dir(f"{results}/{directory}", hint="run python train_finetune.py first")
        after = block_matrices(model)
        if set(after) != set(before):
            raise UserError(f"{results}/{directory} does not have the base's layers; fine-tune {pretrained} with train_finetune.py")
        report["methods"][method] = {name: {**spectrum(after[name] - before[name], energy, keep_rank),
                                            "share_along_W": share_along(after[name] - before[name], before[name]),
                                            "shape": list(before[name].shape)} for name in before}
    # A reference: a random Gaussian matrix of each shape has no low-rank structure at all.
    report["random_reference"] = {str(tuple(w.shape)): spectrum(torch.randn(w.shape, generator=generator), energy, keep_rank)["rank_for_energy"]
                                  for w in before.values()}
    return report
