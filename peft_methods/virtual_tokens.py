"""What prefix and prompt tuning share: `num_virtual_tokens` positions taken from the context, and their checks.

Both plug into a model that offers two slots (MiniGPT does; see minigpt/model.py):
  model.extra_key_values  a module; (batch_size) -> one (keys, values) per layer, each (B, n_head, p, head_dim),
                          seen by every query as if they were earlier positions (prefix tuning)
  model.extra_embeddings  a module; (batch_size) -> (B, p, n_embd), put before the input embeddings (prompt tuning)
Each has `num_virtual_tokens` (p): the positions it takes from the model's context, block_size - p are left for text.
"""

from peft_methods.errors import PeftMethodError


def check_virtual_tokens(num_virtual_tokens, block_size: int, method: str) -> None:
    if isinstance(num_virtual_tokens, bool) or not isinstance(num_virtual_tokens, int) or num_virtual_tokens < 1:
        raise PeftMethodError(f"{method}: num_virtual_tokens must be at least 1, got {num_virtual_tokens!r}; try 8")
    if num_virtual_tokens >= block_size:
        raise PeftMethodError(f"{method}: num_virtual_tokens {num_virtual_tokens} leaves no position for text in a context of "
                              f"{block_size}; use at most {block_size - 1} (8 leaves {block_size - 8})")


def check_free_slot(model, slot: str, method: str) -> None:
    if not hasattr(model, slot):
        raise PeftMethodError(f"{method} needs a model with a `{slot}` slot (as MiniGPT has); {type(model).__name__} has none")
    if getattr(model, slot) is not None:
        raise PeftMethodError(f"the model already has {slot}; apply {method} to a fresh copy of the base model")
