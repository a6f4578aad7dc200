"""Plumbing a reader may skip: one-line errors, safe file reading, atomic writes, and argparse helpers.

Nothing here is about GPTs or LoRA. It exists so that every user mistake ends
in one line that names the fix (exit status 2, no traceback), checkpoints are
read with `torch.load(..., weights_only=True)`, and no interrupted run leaves a
half-written file or directory where a good one used to be.
"""

import argparse
import math
import os
import pickle
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""


# ---------------------------------------------------------------- running a script


def run_cli(main: Callable[[], None], user_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run a script's main(); a UserError (or one of `user_errors`) becomes one line on stderr and exit 2."""
    try:
        main()
    except (UserError, *user_errors) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except NotImplementedError as error:  # a coursework starter with a TODO still open
        print(f"error: {error or 'not implemented yet'}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        # Outputs are written atomically, so stopping early leaves no half-written file.
        print("interrupted: nothing half-written was left behind", file=sys.stderr)
        sys.exit(130)


# ---------------------------------------------------------------- reading inputs


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
    except pickle.UnpicklingError as error:
        if "global" in str(error).lower():  # a pickled function or class: code, which weights_only never runs
            raise UserError(
                f"{path} holds more than plain tensors (weights_only=True refused it); "
                "only load files this project wrote, or re-run the script that writes it"
            ) from None
        raise UserError(f"{path} is corrupted (not a tensor file torch can read); re-run the script that writes it") from None
    except Exception as error:  # a damaged file fails in many ways (zip, pickle, storage): all mean "corrupted"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is corrupted ({first_line}); re-run the script that writes it") from None


# ---------------------------------------------------------------- writing outputs atomically


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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    `os.replace` is atomic on one file system, so readers see the old file or the new one, never half of one.
    """
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


def atomic_save_figure(figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")


def refuse_foreign_directory(path: str | Path, allowed: set[str]) -> None:
    """A UserError if `path` exists and holds anything but `allowed` files: replacing it would delete them."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a directory; choose another --out")
    if path.is_dir():
        foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in allowed)
        if foreign:
            raise UserError(
                f"{path} already holds files this script does not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); replacing it would delete them, so choose another --out"
            )


def write_directory_atomically(path: str | Path, write_files: Callable[[Path], None]) -> Path:
    """Call write_files(tmp_dir) to fill a fresh temporary directory, then swap it in at `path`.

    An existing directory at `path` is replaced only if it holds nothing but the
    files being written (a previous run's output), never a user's other files.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write_files(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes directories private; use the usual permissions
        refuse_foreign_directory(path, {entry.name for entry in tmp.iterdir()})
        if path.exists():
            _swap_in(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _swap_in(new: Path, path: Path) -> None:
    """Move the old directory aside, move the new one in, then delete the old one.

    If anything stops us between the two moves, the old directory goes back, so
    `path` always holds one complete directory: the old or the new.
    """
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old / "previous")
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old / "previous", path)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- command-line flags


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show "(default: ...)" after each flag, except where the default is None: those flags say in words what happens."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults shown in --help and one-line errors."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def probability(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def seed_value(text: str) -> int:
    value = _number(text, int)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def add_common_flags(parser: argparse.ArgumentParser, seed: int) -> None:
    parser.add_argument("--seed", type=seed_value, default=seed, help="random seed: the same seed on the same machine gives the same losses")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (for logs and tests)")
