"""Reading inputs safely: each file checked (exists, readable, not too big) before it is read whole.

A bad input ends in a UserError that names the file and the fix; JSON nesting is
bounded; checkpoints are read with `torch.load(..., weights_only=True)` after their
zip checksums are checked. Nothing here is about GPTs or LoRA.
"""

import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import torch

from minigpt.plumbing.errors import UserError


def check_input_file(path: str | Path, what: str, fix: str = "") -> Path:
    """A UserError unless `path` is a readable file; `fix` says what to do about it."""
    path = Path(path)
    fix = f"; {fix}" if fix else ""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file{fix}")
    if not path.is_file():
        if path.exists():  # /dev/null, a pipe, a device: nothing this project could read whole and check
            raise UserError(f"{what} {path} is not a regular file (a device, pipe or socket){fix or '; give a file'}")
        raise UserError(f"{what} {path} does not exist{fix}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path} is not readable (permission denied); fix its permissions")
    return path


MAX_TEXT_BYTES = 256 * 2**20  # a text file read whole: a corpus far larger than this would not fit the tokenizer's lists
MAX_JSON_BYTES = 64 * 2**20  # the project's JSON files are kilobytes; the study cache and metrics files stay under a megabyte
MAX_TENSOR_BYTES = 4 * 2**30  # a weights file; torch.load reads it whole
MAX_JSON_DEPTH = 32  # the deepest JSON the project writes nests 4 levels


def check_file_size(path: Path, what: str, max_bytes: int) -> None:
    """A UserError before a file that would not fit is read whole (a 20 GB file named by mistake)."""
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(f"{what} {path} is {size / 2**20:,.0f} MiB, more than the {max_bytes / 2**20:,.0f} MiB "
                        "this project reads whole; is it the right file?")


def read_text_file(path: str | Path, what: str, fix: str = "", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of an input file, or a UserError naming the file and the fix."""
    path = check_input_file(path, what, fix)
    check_file_size(path, what, max_bytes)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{what} {path} is not UTF-8 text (byte {error.start} is 0x{raw[error.start]:02x}); save it as UTF-8 and try again"
        ) from None


def parse_json(text: str):
    """json.loads with a bound on nesting: a ValueError (which callers turn into one line) for anything deeper.

    Python's json parser recurses once per level, so thousands of nested brackets raise RecursionError; and a
    value nested deeper than anything the project writes cannot be one of its files anyway.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    stack = [(value, 1)]  # depth measured without recursion
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def read_json_file(path: str | Path, what: str, fix: str = ""):
    """A JSON file's value, size-checked before it is read; a ValueError if it is not JSON or nests too deep."""
    return parse_json(read_text_file(path, what, fix, max_bytes=MAX_JSON_BYTES))


def require_number(value, what: str, integer: bool = False):
    """`value` if it is a finite number (an int, if `integer`), else a ValueError naming `what`; a bool is not a number."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(f"{what} must be {'a whole number' if integer else 'a number'}, got {value!r}")
    return value


def check_zip_checksums(path: Path) -> None:
    """A UserError if a torch file (a zip archive) has a record whose bytes fail their CRC-32.

    torch.save stores a CRC-32 of every record, but torch.load does not check it, so flipped bytes inside
    the weights load silently as other numbers; Python's zipfile checks them.
    """
    try:
        if not zipfile.is_zipfile(path):
            return  # torch's legacy format, or not a torch file: torch.load says what it is
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise UserError(f"{path} is corrupted ({error}); re-run the script that writes it") from None
    if damaged is not None:
        raise UserError(f"{path} is corrupted ({damaged} fails its checksum: bytes were changed); re-run the script that writes it")


def load_tensor_file(path: str | Path, what: str) -> dict:
    """torch.load with weights_only=True, turning every failure into one clear line."""
    path = check_input_file(path, f"{what} file")
    check_file_size(path, f"{what} file", MAX_TENSOR_BYTES)
    check_zip_checksums(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # a pickled function or class: code, which weights_only never runs
            raise UserError(
                f"{path} holds more than plain tensors (weights_only=True refused it); "
                "only load files this project wrote, or re-run the script that writes it"
            ) from None
        raise UserError(f"{path} is corrupted (not a tensor file torch can read); re-run the script that writes it") from None
    except Exception as error:  # a damaged file fails in many ways (zip, pickle, storage): all mean "corrupted"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is corrupted ({first_line}); re-run the script that writes it") from None
