"""The adapter directory: the small file set that turns a MiniGPT base into a fine-tuned one.

An adapter directory holds
  lora_weights.pt       only the A and B tensors (see `lora_state_dict`)
  embedding_weights.pt  only the new words' embedding rows, with their token ids
  lora_config.json      the LoRAConfig plus a fingerprint of the base model's weights
  tokenizer.json        the extended vocabulary (the base's words first, ids unchanged)

Loading re-does what training did: load the base, check its fingerprint,
resize the embedding for the new words, apply LoRA, then copy in A, B and the
new rows, insisting that every key set matches exactly. An adapter trained on
another base model is refused: its low-rank updates are only meaningful on
top of the exact weights they were trained against.
"""

import json
from pathlib import Path

import torch

from experiment.training.new_token_rows import SplitEmbedding, split_new_token_rows
from lora import LoRAConfig, LoRAError, apply_lora, load_lora_state_dict, load_lora_weights, save_lora_weights
from minigpt.plumbing.atomic_writes import write_directory_atomically
from minigpt.checkpoint import RUN_FILE, load_model_dir, model_fingerprint
from minigpt.plumbing.crash_recovery import recover_directory
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import load_tensor_file, read_json_file
from minigpt.tokenizer import WordTokenizer

LORA_WEIGHTS, EMBEDDING_WEIGHTS, LORA_CONFIG, TOKENIZER = "lora_weights.pt", "embedding_weights.pt", "lora_config.json", "tokenizer.json"
ADAPTER_FILES = (LORA_WEIGHTS, EMBEDDING_WEIGHTS, LORA_CONFIG, TOKENIZER)
FORMAT_VERSION = 1
RERUN = "re-run python train_finetune.py --method lora"


def save_adapter(path, model, config: LoRAConfig, tokenizer: WordTokenizer, base_fingerprint: str, base_vocab_size: int,
                 run_info: dict | None = None, extra_files=None):
    """Write the adapter directory atomically. `model` carries LoRA layers and split embedding rows.

    `extra_files` ({name: write(path)}) go into the same directory, in the same swap (a named adapter's merged
    model and metrics: one directory, never a mix of two runs)."""
    if not isinstance(model.token_embedding, SplitEmbedding):
        raise ValueError("expected the new word rows to be split off (split_new_token_rows)")
    new_rows = model.token_embedding.new_rows.detach().cpu().clone()
    token_ids = torch.arange(base_vocab_size, base_vocab_size + new_rows.shape[0])
    settings = {
        "format_version": FORMAT_VERSION,
        **config.to_dict(),
        "base_model_fingerprint": base_fingerprint,
        "base_vocab_size": base_vocab_size,
        "vocab_size": tokenizer.vocab_size,
    }

    def write_files(directory: Path) -> None:
        save_lora_weights(model, directory / LORA_WEIGHTS)  # only A and B: lora's own tensor format
        torch.save({"token_ids": token_ids, "rows": new_rows}, directory / EMBEDDING_WEIGHTS)
        (directory / LORA_CONFIG).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        (directory / TOKENIZER).write_text(tokenizer.to_json(), encoding="utf-8")
        if run_info is not None:  # which run wrote it: compare.py refuses a results folder mixing runs
            (directory / RUN_FILE).write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
        for name, write in (extra_files or {}).items():
            write(directory / name)

    return write_directory_atomically(path, write_files)


def read_adapter_config(path) -> dict:
    path = Path(path)
    recover_directory(path)  # finish a save that was killed before anything is read
    if not path.is_dir():
        raise UserError(f"adapter directory {path} does not exist; run python train_finetune.py --method lora first")
    for name in ADAPTER_FILES:
        if not (path / name).is_file():
            raise UserError(f"adapter directory {path} is missing {name}; {RERUN}")
    try:
        settings = read_json_file(path / LORA_CONFIG, "adapter config")
        LoRAConfig.from_dict(settings)
        if not isinstance(settings.get("base_model_fingerprint"), str):
            raise ValueError("base_model_fingerprint must be a string")
        for key in ("base_vocab_size", "vocab_size"):
            if isinstance(settings.get(key), bool) or not isinstance(settings.get(key), int) or settings[key] < 1:
                raise ValueError(f"{key} must be a positive integer")
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # LoRAError is a ValueError
        raise UserError(f"{path / LORA_CONFIG} is corrupted ({error}); {RERUN}") from None
    return settings


def check_float_tensors(tensors: dict, source: Path) -> None:
    """Every value a floating-point tensor with finite entries; a UserError naming the first that is not."""
    for key, value in tensors.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise UserError(f"{source}: {key} is not a floating-point tensor; {RERUN}")
        if not torch.isfinite(value).all():
            raise UserError(f"{source}: {key} holds NaN or infinite values; {RERUN}")


def load_adapter(adapter_path, base_path, device="cpu"):
    """Base model + adapter -> (MiniGPT with LoRA layers and split rows, extended tokenizer, LoRAConfig)."""
    adapter_path = Path(adapter_path)
    settings = read_adapter_config(adapter_path)
    config = LoRAConfig.from_dict(settings)
    model, base_tokenizer = load_model_dir(base_path, hint="run python train_pretrain.py first")
    tokenizer, rows = check_adapter_fits_base(adapter_path, settings, model_fingerprint(model), model.config.n_embd,
                                              base_tokenizer, base_path)
    model.resize_token_embeddings(tokenizer.vocab_size)
    new_rows = split_new_token_rows(model, settings["base_vocab_size"])
    with torch.no_grad():
        new_rows.copy_(rows)
    try:
        lora_weights = load_lora_weights(adapter_path / LORA_WEIGHTS)
        apply_lora(model, config)
        load_lora_state_dict(model, lora_weights, source=str(adapter_path / LORA_WEIGHTS))
    except LoRAError as error:  # lora names the problem; this layer adds how to fix it here
        raise UserError(f"{error}; {RERUN}") from None
    return model.to(device).eval(), tokenizer, config


def check_adapter_fits_base(adapter_path: Path, settings: dict, fingerprint: str, n_embd: int, base_tokenizer: WordTokenizer,
                            base_path):
    """The adapter's base fingerprint, tokenizer and new rows checked against this base; returns (tokenizer, rows)."""
    if fingerprint != settings["base_model_fingerprint"]:
        raise UserError(
            f"adapter {adapter_path} was trained on a different base model (fingerprint "
            f"{settings['base_model_fingerprint'][:12]}, but {base_path} has {fingerprint[:12]}); "
            "load it onto the base it was trained on, or re-run train_finetune.py on this base"
        )
    tokenizer = WordTokenizer.load(adapter_path / TOKENIZER)
    base_vocab = settings["base_vocab_size"]
    if tokenizer.id_to_token[:base_vocab] != base_tokenizer.id_to_token or tokenizer.vocab_size != settings["vocab_size"]:
        raise UserError(f"{adapter_path / TOKENIZER} does not extend the base model's vocabulary; the adapter directory is inconsistent")

    embedding = load_tensor_file(adapter_path / EMBEDDING_WEIGHTS, "new word embeddings")
    if not isinstance(embedding, dict) or set(embedding) != {"token_ids", "rows"}:
        found = sorted(embedding) if isinstance(embedding, dict) else type(embedding).__name__
        raise UserError(f"{adapter_path / EMBEDDING_WEIGHTS} must hold exactly 'token_ids' and 'rows', found {found}")
    expected_ids = torch.arange(base_vocab, tokenizer.vocab_size)
    rows = embedding["rows"]
    check_float_tensors({"rows": rows}, adapter_path / EMBEDDING_WEIGHTS)
    token_ids = embedding["token_ids"]
    ids_match = torch.is_tensor(token_ids) and token_ids.tolist() == expected_ids.tolist()
    if not ids_match or tuple(rows.shape) != (len(expected_ids), n_embd):
        raise UserError(f"{adapter_path / EMBEDDING_WEIGHTS} does not match the {len(expected_ids)} new words of {adapter_path / TOKENIZER}")
    return tokenizer, rows
