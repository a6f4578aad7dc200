"""The three fine-tuning methods. Each one only decides which parameters train;
the training loop (minigpt.training) is the same for all of them.

* full:   every parameter trains, the whole embedding included.
* freeze: the token embedding's old rows, the position embedding and the lower
          blocks are frozen; the top `train_last_k` blocks, the final LayerNorm
          and the new words' embedding rows train.
* lora:   every base weight is frozen; the A and B matrices on the targeted
          projections and the new words' embedding rows train.
* rows:   the control baseline (experiment studies only): the new words'
          embedding rows and the final LayerNorm train, nothing else. What any
          method gets from the new rows alone.

In freeze and lora the new rows are split off into a parameter of their own
(experiment/training/new_token_rows.py) so the old rows stay bit-identical.
"""

import copy
from dataclasses import dataclass

import torch

from experiment.training.new_token_rows import join_new_token_rows, split_new_token_rows
from lora import LoRAConfig, LoRAError, apply_lora, merge_lora
from minigpt.plumbing.errors import UserError
from peft_methods import PeftMethodError

# What the scripts turn into one line and exit status 2: the project's own errors, lora's and peft_methods'.
USER_ERRORS = (UserError, LoRAError, PeftMethodError)


@dataclass(frozen=True)
class Method:
    name: str
    directory: str  # where its artifact goes under the results folder
    lr: float  # default peak learning rate
    label: str  # for tables and plots


# Default learning rates: for each method, the smallest rate of a small sweep at
# which it learned about 90% of the new-domain probes in the default 150 steps on
# the seed it was tuned on. Over three seeds LoRA's 2e-2 learns 78-92% of them,
# so the 90% does not hold on every seed (docs/results.md). Full fine-tuning moves
# every weight and needs the lowest rate; layer freezing trains fewer; LoRA's
# rate is higher, and how much higher depends on the alpha chosen (lora/config.py).
METHODS = {
    "full": Method("full", "full_finetune", 3e-3, "full fine-tuning"),
    "freeze": Method("freeze", "layer_freezing", 1e-2, "layer freezing"),
    "lora": Method("lora", "lora_adapter", 2e-2, "LoRA (Q, K, V, O)"),
}

# The control baseline of the studies (experiments.py), not part of the default three-method run.
# 1e-2: the rate layer freezing uses for the same new rows and final LayerNorm.
NEW_ROWS = Method("rows", "new_rows", 1e-2, "new rows only")


def lora_label(targets, prefix: str = "LoRA") -> str:
    """"LoRA (Q, K, V, O)" for the attention projections; other layer names as they are; "DoRA (...)" for a variant."""
    short = [t[0].upper() if t in ("q_proj", "k_proj", "v_proj", "o_proj") else t for t in targets]
    return f"{prefix} ({', '.join(short)})"


def grow_vocabulary(base, vocab_size: int, seed: int):
    """A copy of `base` with room for the new words; the new rows' init depends on the seed alone."""
    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    model.resize_token_embeddings(vocab_size)
    return model


def prepare_full(model, num_old_tokens: int) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(True)


def check_train_last_k(train_last_k: int, n_layer: int) -> None:
    if not 0 <= train_last_k <= n_layer:
        raise UserError(f"--train-last-k must be between 0 and the number of blocks ({n_layer}), got {train_last_k}")


def prepare_layer_freezing(model, num_old_tokens: int, train_last_k: int) -> list[str]:
    """Freeze all but the top train_last_k blocks, the final norm and the new rows; return what trains."""
    n_layer = len(model.blocks)
    check_train_last_k(train_last_k, n_layer)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    split_new_token_rows(model, num_old_tokens)  # new rows: a separate, trainable parameter
    trained = ["token_embedding.new_rows"]
    for index in range(n_layer - train_last_k, n_layer):
        model.blocks[index].requires_grad_(True)
        trained.append(f"blocks.{index}")
    model.final_norm.requires_grad_(True)
    trained.append("final_norm")
    return trained


def prepare_new_rows(model, num_old_tokens: int) -> list[str]:
    """Freeze everything but the new words' embedding rows and the final LayerNorm; return what trains."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    split_new_token_rows(model, num_old_tokens)
    model.final_norm.requires_grad_(True)
    return ["token_embedding.new_rows", "final_norm"]


def prepare_lora(model, num_old_tokens: int, config: LoRAConfig) -> dict:
    """Split off the new rows, wrap the targets in LoRALinear (which freezes the rest), unfreeze the new rows."""
    new_rows = split_new_token_rows(model, num_old_tokens)
    wrapped = apply_lora(model, config)
    new_rows.requires_grad_(True)
    return wrapped


def merge_lora_model(model):
    """A plain MiniGPT from a LoRA-adapted one: every update folded in, the new word rows joined again.

    The result has no LoRA module and loads with strict=True into a fresh
    MiniGPT, so it is served by code that has never heard of LoRA.
    """
    merged = merge_lora(model)
    join_new_token_rows(merged)
    for parameter in merged.parameters():
        parameter.requires_grad_(True)  # the joined embedding too: an ordinary model, as if freshly loaded
    return merged
