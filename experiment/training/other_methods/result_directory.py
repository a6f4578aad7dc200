"""The small result folder each method beside LoRA saves, and loading it back onto its base.

A result folder holds
  method_weights.pt     only what the method trained: adapter layers, the folded prefix table, the prompt
                        vectors, the biases or the IA3 vectors
  embedding_weights.pt  the new words' embedding rows, with their token ids (as LoRA's adapter)
  method_config.json    the method, its config, and the base model's fingerprint and vocabulary sizes
  tokenizer.json        the extended vocabulary
  run.json              which run wrote it
BitFit and IA3 also save merged/, a plain MiniGPT served by code that knows no method. Loading re-does what
training did on a fresh copy of the base and refuses a result trained on another base (the same checks as
LoRA's adapter, experiment/training/adapter.py). Every folder is written to a temporary name and renamed.
"""

import copy
import json
from pathlib import Path

import torch

from experiment.training.adapter import EMBEDDING_WEIGHTS, TOKENIZER, check_adapter_fits_base, check_float_tensors
from experiment.training.new_token_rows import SplitEmbedding, join_new_token_rows, split_new_token_rows
from experiment.training.other_methods.catalog import MERGEABLE, OTHER_METHODS
from minigpt.plumbing.atomic_writes import write_directory_atomically
from minigpt.checkpoint import RUN_FILE, load_model_dir, model_fingerprint, save_model_dir
from minigpt.plumbing.crash_recovery import recover_directory
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import load_tensor_file, read_text_file
from peft_methods import (ADAPTER_MARKER, IA3_MARKER, BottleneckAdapterConfig, IA3Config, PeftMethodError, PrefixTuningConfig,
                          PromptTuningConfig, apply_bitfit, apply_bottleneck_adapters, apply_ia3, apply_prefix_tuning,
                          apply_prompt_tuning, bitfit_state_dict, load_bitfit_state_dict, load_trainable_state_dict, merge_ia3,
                          trainable_state_dict)

METHOD_WEIGHTS, METHOD_CONFIG = "method_weights.pt", "method_config.json"
RESULT_FILES = (METHOD_WEIGHTS, EMBEDDING_WEIGHTS, METHOD_CONFIG, TOKENIZER)
FORMAT_VERSION = 1
CONFIGS = {"adapters": BottleneckAdapterConfig, "prefix": PrefixTuningConfig, "prompt": PromptTuningConfig, "ia3": IA3Config}


def rerun(name: str) -> str:
    return f"re-run python train_finetune.py --method {name}"


def method_tensors(name: str, model) -> dict:
    """What the method trained, as saved: the prefix table folded (the MLP dropped), everything else as it is."""
    if name == "adapters":
        return trainable_state_dict(model, ADAPTER_MARKER)
    if name == "ia3":
        return trainable_state_dict(model, IA3_MARKER)
    if name == "bitfit":
        return bitfit_state_dict(model)
    slot = model.extra_key_values if name == "prefix" else model.extra_embeddings
    if name == "prefix":
        slot = copy.deepcopy(slot)
        slot.fold()
    return {"embedding.weight": slot.embedding.weight.detach().cpu().clone()}


def merged_model(name: str, model):
    """A plain MiniGPT computing what the trained model computes (BitFit: the biases are already in place)."""
    merged = copy.deepcopy(model).cpu()
    if name == "ia3":
        merge_ia3(merged)
    join_new_token_rows(merged)
    for parameter in merged.parameters():
        parameter.requires_grad_(True)  # an ordinary model, as if freshly loaded
    return merged


def save_result(folder: Path, name: str, model, config, tokenizer, base_fingerprint: str, base_vocab_size: int,
                run_info: dict) -> None:
    """result/ (and merged/ for BitFit and IA3) under `folder`, each written atomically."""
    model = model.cpu()
    if not isinstance(model.token_embedding, SplitEmbedding):
        raise ValueError("expected the new word rows to be split off (split_new_token_rows)")
    new_rows = model.token_embedding.new_rows.detach().cpu().clone()
    settings = {"format_version": FORMAT_VERSION, "method": name, "config": config.to_dict() if config is not None else {},
                "base_model_fingerprint": base_fingerprint, "base_vocab_size": base_vocab_size, "vocab_size": tokenizer.vocab_size}
    tensors = method_tensors(name, model)

    def write_files(directory: Path) -> None:
        torch.save(tensors, directory / METHOD_WEIGHTS)
        torch.save({"token_ids": torch.arange(base_vocab_size, base_vocab_size + len(new_rows)), "rows": new_rows},
                   directory / EMBEDDING_WEIGHTS)
        (directory / METHOD_CONFIG).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        (directory / TOKENIZER).write_text(tokenizer.to_json(), encoding="utf-8")
        (directory / RUN_FILE).write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")

    write_directory_atomically(folder / "result", write_files)
    if name in MERGEABLE:
        save_model_dir(folder / "merged", merged_model(name, model), tokenizer, run_info=run_info)


def read_result_config(path: Path, name: str) -> dict:
    recover_directory(path)  # finish a save that was killed before anything is read
    if not path.is_dir():
        raise UserError(f"result directory {path} does not exist; run python train_finetune.py --method {name} first")
    for file in RESULT_FILES:
        if not (path / file).is_file():
            raise UserError(f"result directory {path} is missing {file}; {rerun(name)}")
    try:
        settings = json.loads(read_text_file(path / METHOD_CONFIG, "method config"))
        if settings.get("method") != name:
            raise ValueError(f"it holds method {settings.get('method')!r}, not {name!r}")
        if not isinstance(settings.get("base_model_fingerprint"), str):
            raise ValueError("base_model_fingerprint must be a string")
        for key in ("base_vocab_size", "vocab_size"):
            if isinstance(settings.get(key), bool) or not isinstance(settings.get(key), int) or settings[key] < 1:
                raise ValueError(f"{key} must be a positive integer")
        config = CONFIGS[name](**settings["config"]) if name in CONFIGS else None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{path / METHOD_CONFIG} is corrupted ({error}); {rerun(name)}") from None
    return {**settings, "config": config}


def load_result(path, base_path, name: str, device="cpu"):
    """Base model + result folder -> (MiniGPT carrying the method, with split rows; extended tokenizer; config)."""
    path = Path(path)
    settings = read_result_config(path, name)
    config = settings["config"]
    model, base_tokenizer = load_model_dir(base_path, hint="run python train_pretrain.py first")
    tokenizer, rows = check_adapter_fits_base(path, settings, model_fingerprint(model), model.config.n_embd, base_tokenizer, base_path)
    model.resize_token_embeddings(tokenizer.vocab_size)
    with torch.no_grad():
        split_new_token_rows(model, settings["base_vocab_size"]).copy_(rows)
    tensors = load_tensor_file(path / METHOD_WEIGHTS, "method weights")
    if not isinstance(tensors, dict):
        raise UserError(f"{path / METHOD_WEIGHTS} must hold a dict of tensors; {rerun(name)}")
    check_float_tensors(tensors, path / METHOD_WEIGHTS)
    source = str(path / METHOD_WEIGHTS)
    try:
        if name == "adapters":
            apply_bottleneck_adapters(model, config)
            load_trainable_state_dict(model, tensors, ADAPTER_MARKER, source)
        elif name == "ia3":
            apply_ia3(model, config)
            load_trainable_state_dict(model, tensors, IA3_MARKER, source)
        elif name == "bitfit":
            apply_bitfit(model)
            load_bitfit_state_dict(model, tensors, source)
        else:  # prefix (saved folded: the table itself, no MLP) or prompt
            if name == "prefix":
                config = PrefixTuningConfig(config.num_virtual_tokens, prefix_projection=False,
                                            encoder_hidden_size=config.encoder_hidden_size)
                apply_prefix_tuning(model, config)
                slot = model.extra_key_values
            else:
                apply_prompt_tuning(model, PromptTuningConfig(config.num_virtual_tokens, "RANDOM"))  # the saved vectors replace the init
                slot = model.extra_embeddings
            load_trainable_state_dict(slot, tensors, "embedding", source)
    except PeftMethodError as error:  # peft_methods names the problem; this layer adds how to fix it here
        raise UserError(f"{error}; {rerun(name)}") from None
    return model.to(device).eval(), tokenizer, settings["config"]


def result_folder(results: Path, name: str) -> Path:
    return Path(results) / OTHER_METHODS[name].directory
