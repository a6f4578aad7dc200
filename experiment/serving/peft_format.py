"""The adapter directory in Hugging Face PEFT's on-disk layout, and back.

PEFT's `save_pretrained` writes two files that `PeftModel.from_pretrained` reads:
  adapter_config.json         peft_type "LORA", r, lora_alpha, lora_dropout, target_modules, bias, ...
  adapter_model.safetensors   the A and B tensors under "base_model.model.<module path>.lora_A.weight"
  (or adapter_model.bin)      and ".lora_B.weight" (PEFT wraps the model twice, hence the prefix;
                              the adapter's own name is not part of the saved keys)
Both formats hold the same state dict; safetensors is written when the
`safetensors` package is importable, else the .bin (torch.save).

PEFT has no place for new vocabulary, so three files of this project sit beside them:
  new_token_rows.safetensors  the new words' embedding rows and their token ids (.pt without safetensors)
  tokenizer.json              the extended vocabulary (the base's words first, ids unchanged)
  minigpt_adapter.json        the base model's fingerprint and vocabulary sizes
A PEFT user builds MiniGPT from the base directory, grows its vocabulary to
vocab_size (resize_token_embeddings), copies `rows` into the embedding at
`token_ids`, and then calls PeftModel.from_pretrained(model, directory).
"""

import json
from pathlib import Path

import torch

from experiment.training.adapter import EMBEDDING_WEIGHTS, LORA_CONFIG, LORA_WEIGHTS, TOKENIZER, read_adapter_config
from lora import LoRAConfig, LoRAError, load_lora_weights
from minigpt.plumbing.atomic_writes import write_directory_atomically
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import load_tensor_file, read_json_file, read_text_file
from minigpt.tokenizer import WordTokenizer

PEFT_CONFIG, PEFT_SAFETENSORS, PEFT_BIN = "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"
ROWS_SAFETENSORS, ROWS_PT, MINIGPT_INFO = "new_token_rows.safetensors", "new_token_rows.pt", "minigpt_adapter.json"
PREFIX = "base_model.model."


def have_safetensors() -> bool:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


def peft_config(config: LoRAConfig) -> dict:
    """PEFT's LoraConfig fields for this adapter (the ones that matter for loading, and the usual defaults)."""
    return {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": None, "revision": None, "inference_mode": True,
        "r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
        "target_modules": list(config.target_modules), "bias": "none", "fan_in_fan_out": False,
        "init_lora_weights": True if config.init_lora_weights == "kaiming" else "gaussian",
        "modules_to_save": None, "use_rslora": config.use_rslora, "use_dora": False,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
    }


def _save_tensors(tensors: dict, directory: Path, safetensors_name: str, torch_name: str, use_safetensors: bool) -> None:
    if use_safetensors:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / safetensors_name))
    else:
        torch.save(tensors, directory / torch_name)


def _load_tensors(directory: Path, safetensors_name: str, torch_name: str, what: str) -> dict:
    if (directory / safetensors_name).is_file():
        if not have_safetensors():
            raise UserError(f"{directory / safetensors_name} needs the safetensors package; pip install safetensors")
        from safetensors.torch import load_file
        try:
            return load_file(str(directory / safetensors_name))
        except Exception as error:  # a damaged file fails in many ways
            raise UserError(f"{directory / safetensors_name} is corrupted ({str(error).splitlines()[0]}); export it again") from None
    if not (directory / torch_name).is_file():
        raise UserError(f"{directory} has neither {safetensors_name} nor {torch_name}; export the {what} again")
    return load_tensor_file(directory / torch_name, what)


def export_peft(adapter_dir, out_dir, use_safetensors: bool | None = None) -> Path:
    """Write the adapter directory at `adapter_dir` in PEFT's layout at `out_dir`; return out_dir."""
    adapter_dir = Path(adapter_dir)
    settings = read_adapter_config(adapter_dir)
    config = LoRAConfig.from_dict(settings)
    if config.use_dora or config.quantize_base != "none":  # never a silently different adapter
        raise UserError(f"{adapter_dir} is a {'DoRA' if config.use_dora else 'QLoRA'} adapter; the PEFT export covers plain "
                        "LoRA, rsLoRA and LoRA+ adapters only; use its merged model instead (lora_merged/ or variants/<name>/merged/), "
                        "a plain MiniGPT")
    try:
        weights = load_lora_weights(adapter_dir / LORA_WEIGHTS)
    except LoRAError as error:
        raise UserError(f"{error}; re-run python train_finetune.py --method lora") from None
    rows = load_tensor_file(adapter_dir / EMBEDDING_WEIGHTS, "new word embeddings")
    tokenizer_text = read_text_file(adapter_dir / TOKENIZER, "tokenizer")
    use_safetensors = have_safetensors() if use_safetensors is None else use_safetensors
    info = {key: settings[key] for key in ("base_model_fingerprint", "base_vocab_size", "vocab_size")}

    def write_files(directory: Path) -> None:
        (directory / PEFT_CONFIG).write_text(json.dumps(peft_config(config), indent=2) + "\n", encoding="utf-8")
        _save_tensors({PREFIX + key: value for key, value in weights.items()}, directory, PEFT_SAFETENSORS, PEFT_BIN, use_safetensors)
        _save_tensors({"token_ids": rows["token_ids"], "rows": rows["rows"]}, directory, ROWS_SAFETENSORS, ROWS_PT, use_safetensors)
        (directory / TOKENIZER).write_text(tokenizer_text, encoding="utf-8")
        (directory / MINIGPT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    return write_directory_atomically(out_dir, write_files)


def import_peft(peft_dir, out_dir, pretrained=None) -> Path:
    """Turn a directory written by export_peft back into this project's adapter directory at `out_dir`.

    Everything read is checked against everything written (rank, targets, shapes, vocabulary) and, given the
    base model directory `pretrained`, the new adapter is loaded onto it before it replaces anything at `out_dir`.
    """
    peft_dir = Path(peft_dir)
    redo = "export it again with python peft_convert.py to-peft"
    try:
        settings = read_json_file(peft_dir / PEFT_CONFIG, "PEFT config", redo)
        info = read_json_file(peft_dir / MINIGPT_INFO, "MiniGPT adapter info", redo)
        if settings.get("peft_type") != "LORA":
            raise ValueError(f"peft_type is {settings.get('peft_type')!r}, only LORA is supported")
        unsupported = [k for k in ("use_dora", "fan_in_fan_out") if settings.get(k)]
        if unsupported or settings.get("bias", "none") != "none":
            raise ValueError(f"settings this project does not implement: {unsupported or ['bias']}")
        if not isinstance(settings.get("target_modules"), list):  # PEFT reads a string as a regular expression
            raise ValueError(f"target_modules must be a list of layer names, got {settings.get('target_modules')!r}")
        init = "gaussian" if settings.get("init_lora_weights") == "gaussian" else "kaiming"
        config = LoRAConfig(r=settings["r"], lora_alpha=settings["lora_alpha"], lora_dropout=settings.get("lora_dropout", 0.0),
                            target_modules=list(settings["target_modules"]), init_lora_weights=init,
                            use_rslora=bool(settings.get("use_rslora", False))).validate()
        project_settings = {"format_version": 1, **config.to_dict(),
                            **{key: info[key] for key in ("base_model_fingerprint", "base_vocab_size", "vocab_size")}}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{peft_dir} is not a MiniGPT LoRA export ({error}); {redo}") from None
    tensors = _load_tensors(peft_dir, PEFT_SAFETENSORS, PEFT_BIN, "PEFT adapter")
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and k.startswith(PREFIX) for k in tensors):
        raise UserError(f"{peft_dir}: the adapter tensors must be a dictionary whose keys start with {PREFIX!r}; {redo}")
    weights = {key[len(PREFIX):]: value for key, value in tensors.items()}
    rows = _load_tensors(peft_dir, ROWS_SAFETENSORS, ROWS_PT, "new word rows")
    tokenizer = WordTokenizer.load(peft_dir / TOKENIZER)
    try:
        check_imported(config, weights, rows, tokenizer, project_settings)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{peft_dir} does not hold the adapter its config describes ({error}); {redo}") from None

    def write_files(directory: Path) -> None:
        torch.save(weights, directory / LORA_WEIGHTS)
        torch.save({"token_ids": rows["token_ids"], "rows": rows["rows"]}, directory / EMBEDDING_WEIGHTS)
        (directory / LORA_CONFIG).write_text(json.dumps(project_settings, indent=2) + "\n", encoding="utf-8")
        (directory / TOKENIZER).write_text(tokenizer.to_json(), encoding="utf-8")
        if pretrained is not None:  # the written adapter must load onto its base before it replaces anything
            from experiment.training.adapter import load_adapter
            load_adapter(directory, pretrained)

    return write_directory_atomically(out_dir, write_files)


def check_imported(config: LoRAConfig, weights: dict, rows, tokenizer: WordTokenizer, settings: dict) -> None:
    """A ValueError naming the first disagreement between the config, the A and B tensors and the new vocabulary."""
    layers = {}
    for key, value in weights.items():
        layer, sep, rest = key.rpartition(".lora_")
        if not sep or rest not in ("A.weight", "B.weight") or not torch.is_tensor(value) or not value.is_floating_point() \
                or value.dim() != 2:
            raise ValueError(f"{key} is not a lora_A or lora_B weight matrix")
        layers.setdefault(layer, {})[rest[0]] = value
    if not layers:
        raise ValueError("no lora_A or lora_B tensor")
    for layer, pair in layers.items():
        if set(pair) != {"A", "B"}:
            raise ValueError(f"{layer} has lora_{''.join(pair)} without its partner")
        if pair["A"].shape[0] != config.r or pair["B"].shape[1] != config.r:
            raise ValueError(f"{layer}'s tensors have rank {pair['A'].shape[0]}, the config says r={config.r}")
        if not any(layer == t or layer.endswith("." + t) for t in config.target_modules):
            raise ValueError(f"{layer} is not one of the target_modules {config.target_modules}")
    for target in config.target_modules:
        if not any(layer == target or layer.endswith("." + target) for layer in layers):
            raise ValueError(f"target_modules names {target!r} but no tensor adapts it")
    if not isinstance(rows, dict) or set(rows) != {"token_ids", "rows"}:
        raise ValueError("the new word rows must hold exactly token_ids and rows")
    base_vocab, vocab = settings["base_vocab_size"], settings["vocab_size"]
    if tokenizer.vocab_size != vocab:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} words, minigpt_adapter.json says vocab_size {vocab}")
    ids, new_rows = rows["token_ids"], rows["rows"]
    if not torch.is_tensor(ids) or ids.tolist() != list(range(base_vocab, vocab)):
        raise ValueError(f"token_ids must be the new words' ids {base_vocab}..{vocab - 1}")
    if not torch.is_tensor(new_rows) or not new_rows.is_floating_point() or new_rows.dim() != 2 or new_rows.shape[0] != vocab - base_vocab:
        raise ValueError(f"rows must be a float matrix with one row per new word ({vocab - base_vocab})")
