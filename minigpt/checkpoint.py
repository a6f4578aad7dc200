"""Model directories: `config.json` + `model.pt` + `tokenizer.json`.

Saving writes a complete directory under a temporary name and then renames it
into place, so an interrupted run leaves the previous model as it was.
Loading uses `torch.load(..., weights_only=True)`, which refuses pickled code,
and checks that the three files exist and agree with each other.
"""

import hashlib
import json
from pathlib import Path

import torch

from minigpt.plumbing.atomic_writes import write_directory_atomically
from minigpt.config import GPTConfig
from minigpt.plumbing.crash_recovery import recover_directory
from minigpt.plumbing.errors import UserError
from minigpt.model import MiniGPT
from minigpt.plumbing.reading import load_tensor_file, read_json_file
from minigpt.tokenizer import WordTokenizer

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.pt", "tokenizer.json"
RUN_FILE = "run.json"  # optional: which run wrote the directory, and from which corpus


def save_model_dir(path: str | Path, model: MiniGPT, tokenizer: WordTokenizer, extra_files=None, run_info: dict | None = None,
                   replaceable: set[str] | None = None) -> Path:
    """Write config, weights and tokenizer (and `extra_files`: {name: write(path)}, and `run_info` as run.json)
    as one atomic directory. Weights holding NaN or infinity are refused: they never replace a saved model."""
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {model.config.vocab_size}")
    if not all_finite(model.state_dict()):
        raise UserError(f"the trained weights hold NaN or infinite values (training diverged); {path} was not replaced; "
                        "try a lower --lr")

    def write_files(directory: Path) -> None:
        (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        (directory / TOKENIZER_FILE).write_text(tokenizer.to_json(), encoding="utf-8")
        if run_info is not None:
            (directory / RUN_FILE).write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
        for name, write in (extra_files or {}).items():
            write(directory / name)

    return write_directory_atomically(path, write_files, replaceable)


def all_finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if torch.is_tensor(t) and t.is_floating_point())


def read_run_info(path: str | Path) -> dict | None:
    """The run.json of a model or adapter directory ({"run_id": ..., ...}), or None if it has none."""
    file = Path(path) / RUN_FILE
    if not file.is_file():
        return None
    try:
        info = read_json_file(file, "run file")
        if not isinstance(info, dict) or not isinstance(info.get("run_id"), str):
            raise ValueError("expected an object with a string run_id")
    except ValueError as error:
        raise UserError(f"{file} is corrupted ({error}); re-run the script that wrote {Path(path).name}") from None
    return info


def load_model_dir(path: str | Path, device: torch.device | str = "cpu", hint: str = "") -> tuple[MiniGPT, WordTokenizer]:
    """Load a model directory; any missing, corrupted or inconsistent file is a one-line UserError."""
    path = Path(path)
    hint = f" ({hint})" if hint else ""
    recover_directory(path)  # finish a save that was killed before anything is read
    if not path.is_dir():
        raise UserError(f"model directory {path} does not exist{hint}")
    for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
        if not (path / name).is_file():
            raise UserError(f"model directory {path} is missing {name}{hint}")
    try:
        config = GPTConfig.from_dict(read_json_file(path / CONFIG_FILE, "config file"))
    except (ValueError, TypeError, AttributeError) as error:
        raise UserError(f"{path / CONFIG_FILE} is corrupted ({error}){hint}") from None
    tokenizer = WordTokenizer.load(path / TOKENIZER_FILE)
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(
            f"{path / TOKENIZER_FILE} has {tokenizer.vocab_size} tokens but {path / CONFIG_FILE} says "
            f"vocab_size {config.vocab_size}; the files come from different runs{hint}"
        )
    state = load_tensor_file(path / WEIGHTS_FILE, "model weights")
    if isinstance(state, dict) and not all_finite(state):
        raise UserError(f"{path / WEIGHTS_FILE} holds NaN or infinite weights (its training diverged); "
                        f"retrain it, for example with a lower --lr{hint}")
    model = MiniGPT(config)
    check_state_dict_keys(state, model.state_dict(), path / WEIGHTS_FILE)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise UserError(f"{path / WEIGHTS_FILE} does not fit {path / CONFIG_FILE} ({str(error).splitlines()[-1].strip()}){hint}") from None
    return model.to(device).eval(), tokenizer


def check_state_dict_keys(found: dict, expected: dict, source: Path) -> None:
    """A UserError naming the first missing and unexpected keys, if the key sets differ."""
    if not isinstance(found, dict) or not all(torch.is_tensor(v) for v in found.values()):
        raise UserError(f"{source} is not a state dict of tensors; re-run the script that writes it")
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"{source} does not match the model: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}"
        )
    for key, tensor in found.items():  # load_state_dict would cast int64 weights silently
        if tensor.dtype != expected[key].dtype:
            raise UserError(f"{source}: {key} is {tensor.dtype}, the model's is {expected[key].dtype}; "
                            "re-run the script that writes it")


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes: identifies one set of base weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()
