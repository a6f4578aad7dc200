"""What trains in each method beside LoRA: the method applied to the grown base, and the new words' rows.

As for LoRA, the new words' embedding rows are split off and trained
(experiment/training/new_token_rows.py), so every method can write the new
words; the old rows, and every base weight, stay bit-identical.
"""

import torch

from experiment.training.new_token_rows import split_new_token_rows
from peft_methods import (adapter_parameter_count, apply_bitfit, apply_bottleneck_adapters, apply_ia3, apply_prefix_tuning,
                          apply_prompt_tuning, bitfit_parameter_count, ia3_parameter_count, prefix_parameter_count,
                          prompt_parameter_count)


def prepare_other_method(model, num_old_tokens: int, name: str, config, tokenizer) -> dict:
    """Apply the method (which freezes the base), unfreeze the new rows; return what the run record keeps."""
    new_rows = split_new_token_rows(model, num_old_tokens)
    c = model.config
    details = {"config": config.to_dict() if config is not None else {}, "context_positions_left": c.block_size}
    if name == "adapters":
        wrapped = apply_bottleneck_adapters(model, config)
        details["adapted_layers"] = list(wrapped)
        details["formula_parameters"] = adapter_parameter_count(c.n_embd, config.adapter_size, len(wrapped))
    elif name == "prefix":
        apply_prefix_tuning(model, config)
        details["formula_parameters"] = prefix_parameter_count(config, c.n_layer, c.n_embd)
        details["saved_parameters"] = prefix_parameter_count(config, c.n_layer, c.n_embd, folded=True)
    elif name == "prompt":
        apply_prompt_tuning(model, config, tokenizer.encode(config.prompt_tuning_init_text))
        details["formula_parameters"] = prompt_parameter_count(config, c.n_embd)
    elif name == "bitfit":
        details["trained_biases"] = apply_bitfit(model)
        details["formula_parameters"] = bitfit_parameter_count(c.n_layer, c.n_embd)
    elif name == "ia3":
        wrapped = apply_ia3(model, config)
        details["adapted_layers"] = list(wrapped)
        details["formula_parameters"] = ia3_parameter_count(c.n_layer, c.n_embd)
    else:
        raise ValueError(f"unknown method {name!r}")
    new_rows.requires_grad_(True)
    details["context_positions_left"] = model.text_positions()
    return details


def base_tensors_changed(model, base) -> list[str]:
    """The base's tensors that differ, bit for bit, from their place in the adapted model (none, except BitFit's biases).

    A wrapped layer keeps its weights under .base (adapters, IA3); the split embedding its old rows under old_rows.
    """
    mine = dict(model.named_parameters())
    changed = []
    for name, tensor in base.named_parameters():
        if name == "token_embedding.weight":
            found = mine.get("token_embedding.old_rows", mine.get(name))  # split off for fine-tuning, or not
        else:
            module, _, leaf = name.rpartition(".")
            found = mine.get(name, mine.get(f"{module}.base.{leaf}"))
        if found is None or not torch.equal(found.detach().cpu(), tensor.detach().cpu()):
            changed.append(name)
    return changed
