"""Atomic file writing and safe checkpoint reading.

Every output goes to a temporary name in the same folder and is then renamed
into place (`os.replace` is atomic on one file system), so an interrupted run
never leaves a half-written file where a good one used to be.
"""

import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from minigpt.errors import UserError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes files private; use the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_torch_save(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_figure(figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` if needed; a UserError if it cannot be created or written."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create output directory {path} ({error.strerror}); choose another --out") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output directory {path} is not writable; choose another --out or fix its permissions")
    return path


def check_input_file(path: str | Path, what: str, fix: str = "") -> Path:
    """A UserError unless `path` is a readable file; `fix` says what to do about it."""
    path = Path(path)
    fix = f"; {fix}" if fix else ""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file{fix}")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist{fix}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path} is not readable (permission denied); fix its permissions")
    return path


def read_text_file(path: str | Path, what: str, fix: str = "") -> str:
    """The UTF-8 text of an input file, or a UserError naming the file and the fix."""
    path = check_input_file(path, what, fix)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{what} {path} is not UTF-8 text (byte {error.start} is 0x{raw[error.start]:02x}); save it as UTF-8 and try again"
        ) from None


def load_tensor_file(path: str | Path, what: str) -> dict:
    """torch.load with weights_only=True, turning every failure into one clear line."""
    path = check_input_file(path, f"{what} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} holds more than plain tensors (weights_only=True refused it); "
            "only load files this project wrote, or re-run the script that writes it"
        ) from None
    except Exception as error:  # a damaged file fails in many ways (zip, pickle, storage): all mean "corrupted"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is corrupted ({first_line}); re-run the script that writes it") from None
