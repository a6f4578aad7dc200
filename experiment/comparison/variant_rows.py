"""The variants' rows of the comparison: each variant adapter loaded from disk, merged copy checked, measured.

Only runs when train_finetune.py --method variants has written variants/.
Each variant is evaluated through its merged model (a plain MiniGPT, as
served); the merge check compares that with the adapter applied onto the base.
"""

from pathlib import Path

import torch

from experiment.training.adapter import load_adapter
from experiment.comparison.measure import comparison_row, directory_bytes, raw_tensor_bytes
from experiment.training.new_token_rows import join_new_token_rows
from minigpt.checkpoint import load_model_dir
from minigpt.plumbing.errors import UserError

RUN_VARIANTS = "run python train_finetune.py --method variants"


@torch.no_grad()
def compare_variants(results: Path, pretrained, metrics: dict, data, tokenizer, before: dict, device, max_logit_difference) -> dict:
    """{variant: figures}, in the same units as the methods' rows, plus the merge check and QLoRA's figures."""
    rows = {}
    for name, trained in metrics.get("variants", {}).items():
        folder = results / "variants" / name
        unmerged, adapter_tokenizer, _ = load_adapter(folder / "adapter", pretrained, device)
        join_new_token_rows(unmerged)
        merged, merged_tokenizer = load_model_dir(folder / "merged", device, hint=RUN_VARIANTS)
        if not (adapter_tokenizer.id_to_token == merged_tokenizer.id_to_token == tokenizer.id_to_token):
            raise UserError(f"the variant artifacts in {folder} come from another run than {results}; {RUN_VARIANTS}")
        measured = data.suite.measure(merged, tokenizer, device)
        rows[name] = {
            **comparison_row(trained, measured, before),
            "adapter_file_bytes": directory_bytes(folder / "adapter"),
            "adapter_tensor_bytes": raw_tensor_bytes(folder / "adapter"),
            "merge_check_max_abs_logit_difference": max_logit_difference(unmerged, merged, data.splits.val),
            "quantization": trained.get("quantization", {}),
        }
    return rows
