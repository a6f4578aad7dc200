"""A Hugging Face causal language model and its own tokenizer, loaded from a directory or the local cache, and checked.

`--model` is either a directory (holding config.json and the weights, as
`save_pretrained` writes it) or a Hub name such as HuggingFaceTB/SmolLM-135M.
A name is looked up in the user's Hugging Face cache only
(`local_files_only=True`): nothing is downloaded unless the caller allows it
(finetune_hf.py's --allow-download). Every failure is one UserError that says
what to do, never a transformers traceback.

`CausalLMWithLoss` wraps the model so that the project's one training loop
(minigpt/training.py) can train it unchanged: that loop calls `model(x, y)`
and expects `(logits, loss)`, and reads `model.config.block_size`.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.plumbing.errors import UserError, first_few
from minigpt.training import is_out_of_memory

CACHE_HINT = "give a directory that holds config.json (as save_pretrained writes it), or add --allow-download to fetch it"
DOWNLOAD_HINT = "with --allow-download: check the name on huggingface.co and this machine's network connection"
DIRECTORY_HINT = "save or copy the model directory again (save_pretrained writes it whole)"


def looks_like_a_path(name: str) -> bool:
    """A name the user meant as a directory: it exists, starts with ., / or ~, or is not of the Hub's owner/name form."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") != 1


def load_causal_lm(name: str, allow_download: bool = False, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) for `name`, a directory or a Hub name in the local cache, in `dtype`, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # imported here: the rest of the project never needs it
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # its loading and saving bars; the training loop shows the one that matters

    hint = CACHE_HINT
    if looks_like_a_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise UserError(f"model directory {path} does not exist; {CACHE_HINT}")
        if not path.is_dir():  # e.g. the config.json inside it
            raise UserError(f"{path} is not a directory; give the model directory (the one holding config.json and the weights)")
        if not (path / "config.json").is_file():
            raise UserError(f"{path} holds no config.json, so it is not a Hugging Face model directory; {CACHE_HINT}")
        name, hint = str(path), DIRECTORY_HINT  # it was found: a failure below is in its files
    elif not allow_download:
        name = cached_snapshot(name)
    else:
        hint = DOWNLOAD_HINT  # a Hub name the user asked to download: saying "add --allow-download" would not help
    options = {"local_files_only": not allow_download}
    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its many-line loading reports: what matters is checked below, in one line
    # Any exception: a damaged directory fails in a different layer of transformers for each file and field (a config
    # value of the wrong type, a truncated safetensors file, JSON nested too deep), each with its own exception type.
    try:
        try:
            model, loading = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, output_loading_info=True, **options)
        except Exception as error:
            raise loading_error(f"a causal language model from {name}", error,
                                f"its files are damaged or not a model transformers knows; {hint}") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, **options)
        except Exception as error:
            raise loading_error(f"the tokenizer of {name}", error, "save the model's tokenizer beside it "
                                "(tokenizer.save_pretrained) so the text is split the way the model was trained") from None
    finally:
        transformers_logging.set_verbosity(previous)
    if missing := sorted(loading["missing_keys"]):  # transformers fills them with random numbers, and says so only in a log
        raise UserError(f"the weights of {name} lack {len(missing)} tensor(s) its config.json needs ({first_few(missing)}): "
                        f"a damaged or mismatched weights file; {DIRECTORY_HINT}")
    if unused := sorted(loading["unexpected_keys"]):  # ignored by transformers; said here since its own report is silenced
        print(f"warning: {len(unused)} tensor(s) in the weights of {name} belong to no layer of the model and are ignored "
              f"({first_few(unused)})", file=sys.stderr)
    check_tokenizer_matches(model, tokenizer, name)
    return model.eval(), tokenizer


def cached_snapshot(name: str) -> str:
    """The directory of Hub model `name` in the local Hugging Face cache, found without touching the network.

    Loading that directory, not the name, keeps transformers off the network too: given a name, even with
    local_files_only=True, transformers 5 still asks the Hub whether the name is an adapter (and waits out
    its retries when the network is unreachable).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise UserError(f"{name} is neither a directory nor a model in the Hugging Face cache; {CACHE_HINT}") from None


def loading_error(what: str, error: Exception, fix: str) -> UserError:
    """One line for an exception from transformers while loading `what`, with the fix that fits its kind."""
    if isinstance(error, MemoryError) or is_out_of_memory(error):
        return UserError(f"not enough memory to load {what} ({first_line(error)}); try --dtype bfloat16, or a smaller model")
    if isinstance(error, ImportError):  # a tokenizer that needs sentencepiece, protobuf or tiktoken
        return UserError(f"loading {what} needs a package that is not installed ({first_line(error)}); install it with pip")
    return UserError(f"cannot load {what} ({type(error).__name__}: {first_line(error)}); {fix}")


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_tokenizer_matches(model, tokenizer, name: str) -> None:
    """A tokenizer whose ids run past the model's embedding rows belongs to another model: refuse it."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise UserError(f"the tokenizer of {name} has {len(tokenizer):,} tokens but the model has {rows:,} embedding rows: "
                        "they do not belong together; put the model's own tokenizer in its directory")
    for special in ("bos_token_id", "eos_token_id"):
        value = getattr(model.config, special, None)
        if isinstance(value, int) and value >= len(tokenizer):
            raise UserError(f"the model's {special} is {value} but its tokenizer has only {len(tokenizer):,} tokens: "
                            "they do not belong together; put the model's own tokenizer in its directory")


def linear_layer_names(model: nn.Module) -> list[str]:
    """The distinct last names of the model's nn.Linear layers (what --target-modules may name)."""
    return sorted({name.rpartition(".")[2] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def check_targets(model: nn.Module, targets: list[str]) -> None:
    """Every target must name at least one nn.Linear; the error lists the names the model has."""
    names = linear_layer_names(model)
    missing = [t for t in targets if t not in names]
    if missing:
        raise UserError(f"the model has no linear layer named {', '.join(missing)}; its linear layers are: {', '.join(names)}; "
                        "choose --target-modules from those")


def context_length(model) -> int:
    """The longest sequence the model was configured for (max_position_embeddings), or 2048 if it does not say."""
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


class CausalLMWithLoss(nn.Module):
    """model(x, y) -> (logits, mean cross-entropy), the interface of minigpt's training loop and evaluation."""

    def __init__(self, lm: nn.Module, block_size: int):
        super().__init__()
        self.lm = lm
        self.config = SimpleNamespace(block_size=block_size)

    def text_positions(self) -> int:
        """Positions of text per window (minigpt's loop asks, since MiniGPT may reserve some for a prefix): all of them here."""
        return self.config.block_size

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.lm(input_ids=idx).logits  # (B, T, vocab)
        if targets is None:
            return logits, None
        # float32 loss even for a bf16 model: the log-softmax over a large vocabulary loses too much in 8 bits of mantissa
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss
