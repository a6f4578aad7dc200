"""Plumbing a reader may skip: one-line errors, safe file reading, atomic writes, and argparse helpers.

Nothing here is about GPTs or LoRA. It exists so that every user mistake ends
in one line that names the fix (exit status 2, no traceback), checkpoints are
read with `torch.load(..., weights_only=True)`, and no interrupted run leaves a
half-written file or directory where a good one used to be.
"""

import argparse
import ctypes
import errno
import json
import math
import os
import pickle
import re
import secrets
import shutil
import signal
import socket
import sys
import time
import zipfile
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
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the scripts' quiet start-up handler hands over to this one
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


# ---------------------------------------------------------------- writing outputs atomically


def new_run_id() -> str:
    """An id for one run of a script, stored with everything it writes: pieces from different runs can be told apart."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


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
    recover_directory(path)  # a temporary left by a killed writer of this same file is deleted (it works for files too)
    tmp = _temporary_sibling(path, "tmp")  # named with our pid, so the next run knows whether its writer is alive
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise UserError(f"cannot write in {path.parent} ({error.strerror}); choose another --out") from None
    try:
        with saving_errors(path):
            yield tmp
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes files private; use the usual permissions
            _fsync_file(tmp)
            os.replace(tmp, path)
            _fsync_directory(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_save_figure(figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")


def refuse_foreign_directory(path: str | Path, allowed: set[str], inside: dict[str, set[str]] | None = None) -> None:
    """A UserError if `path` exists and holds anything but `allowed` files: replacing it would delete them.

    `inside` names the files allowed in each of its subdirectories, which are replaced with it.
    """
    path = Path(path)
    recover_directory(path)  # a save killed earlier is finished first, so the check sees what is really there
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a directory; choose another --out")
    if path.is_dir():
        remove_stale_temporaries(path)  # the project's own leftovers of killed runs are not the user's files
        for name in inside or {}:
            if (path / name).is_dir():
                remove_stale_temporaries(path / name)
        foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in allowed)
        for name, names in (inside or {}).items():
            if (path / name).is_dir():
                foreign += sorted(f"{name}/{entry.name}" for entry in (path / name).iterdir() if entry.name not in names)
        if foreign:
            raise UserError(
                f"{path} already holds files this script does not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); replacing it would delete them, so choose another --out"
            )


def write_directory_atomically(path: str | Path, write_files: Callable[[Path], None],
                                replaceable: set[str] | None = None) -> Path:
    """Call write_files(tmp_dir) to fill a fresh temporary directory, then swap it in at `path`.

    An existing directory at `path` is replaced only if it holds nothing but the
    files being written or the names in `replaceable` (a previous run's output),
    never a user's other files.

    The guarantee (Linux, one local file system): after a crash or kill -9 at
    any instant, `path` holds the complete old directory or the complete new
    one, or, in the portable fallback's one gap between two renames, no
    directory at all but a complete `.<name>.<pid>-<id>.old` beside it, which
    `recover_directory` (run by every save and load) puts back. Temporary
    directories of dead processes are deleted by the next save or load. Every
    file is fsynced before the swap and the parent directory after it, so after
    a power loss the same holds, as far as the file system honours fsync.
    """
    path = Path(path)
    if path.is_symlink():  # a symlinked --out: the swap happens at its target, the link stays a link
        path = Path(os.path.realpath(path))
    ensure_writable_dir(path.parent)
    recover_directory(path)
    tmp = _temporary_sibling(path, "tmp")
    tmp.mkdir()
    try:
        with saving_errors(path):
            _test_pause("before-write", path)
            write_files(tmp)
            os.chmod(tmp, 0o777 & ~current_umask())  # fresh directories follow the umask like any other
            _fsync_tree(tmp)
            _test_pause("written", path)
            refuse_foreign_directory(path, {entry.name for entry in tmp.iterdir()} | (replaceable or set()))
            if path.exists():
                _swap_in(tmp, path)
            else:
                os.replace(tmp, path)
            _fsync_directory(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


@contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold `.<name>.lock` beside the output `path` while a run writes it: a second run on the same --out is refused.

    Two runs writing one results folder would each swap in their own set and one run's models would be
    silently dropped. The lock file names its holder (pid, host, start time); a lock whose process has
    died on this host (kill -9, power loss) is taken over, so a crash never blocks the next run.
    """
    path = Path(os.path.realpath(path))  # a symlinked --out and its target share one lock
    ensure_writable_dir(path.parent)
    lock = path.parent / f".{path.name}.lock"
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            other = _read_lock(lock)
            if other is not None and other.get("host") == holder["host"] and not _pid_alive(other.get("pid")):
                lock.unlink(missing_ok=True)  # its writer died: take the lock over
                continue
            who = (f"pid {other.get('pid')} on {other.get('host')}, started {other.get('started')}" if other
                   else "a run whose lock file is unreadable")
            raise UserError(f"{path} is being written by another run ({who}); wait for it to finish or choose another --out "
                            f"(if that run is gone, delete {lock})") from None
        except OSError as error:
            raise UserError(f"cannot create the lock file {lock} ({error.strerror}); choose another --out") from None
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(json.dumps(holder) + "\n")
        break
    else:
        raise UserError(f"could not take the lock {lock}; another run keeps taking it; try again")
    try:
        yield
    finally:
        if (_read_lock(lock) or {}).get("pid") == holder["pid"]:
            lock.unlink(missing_ok=True)


def _read_lock(lock: Path) -> dict | None:
    try:
        value = parse_json(lock.read_text(encoding="utf-8")[:4096])
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _pid_alive(pid) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextmanager
def saving_errors(path: Path) -> Iterator[None]:
    """An OSError while saving (no space, file-size limit, permission) becomes one line naming `path`.

    torch.save reports a failed write as a RuntimeError from its zip writer; that is the same failure.
    """
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"could not write {path} ({reason}); the previous {path.name} is unchanged; "
                        "free some disk space or choose another --out") from None
    except RuntimeError as error:
        if not any(marker in str(error).lower() for marker in ("write", "inline_container", "unexpected pos")):
            raise  # not a failed write: a bug, which should show its traceback
        raise UserError(f"could not write {path} (the file write failed: disk full or file-size limit?); "
                        f"the previous {path.name} is unchanged; free some disk space or choose another --out") from None


def _temporary_sibling(path: Path, kind: str) -> Path:
    """`.name.<pid>-<random>.<kind>` beside `path`: the pid tells recovery whether its writer is still alive."""
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _writer_alive(sibling: Path) -> bool:
    try:
        pid = int(sibling.name.rsplit(".", 2)[1].split("-")[0])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return True  # this process: a save in progress (our own leftovers are removed by the `finally` that made them)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.\d+-[0-9a-f]{8}\.(tmp|old)$")  # _temporary_sibling's names


def remove_stale_temporaries(directory: Path) -> None:
    """Inside `directory`: finish or delete every temporary of this project's naming whose writer is dead."""
    try:
        names = {match["name"] for entry in directory.iterdir() if (match := TEMPORARY_NAME.match(entry.name))}
    except OSError:
        return
    for name in names:
        recover_directory(directory / name)


def recover_directory(path: str | Path) -> None:
    """Finish what a killed save left beside `path`: put a moved-aside directory back, delete stale temporaries.

    `.name.*.old` is a complete previous directory: if `path` is missing (killed
    between the two renames of the portable swap) it goes back; otherwise the
    swap had finished and it is deleted. `.name.*.tmp` is never needed: it is
    either half-written or, after an exchange, the old directory.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    prefix = f".{path.name}."
    try:
        siblings = [p for p in parent.iterdir() if p.name.startswith(prefix) and p.name.endswith((".old", ".tmp"))]
    except OSError:
        return
    lock = parent / f".{path.name}.lock"
    holder = _read_lock(lock) if lock.is_file() else None
    if holder is not None and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
        lock.unlink(missing_ok=True)  # output_lock's file of a run that was killed
    siblings = [p for p in siblings if not _writer_alive(p)]
    olds = sorted((p for p in siblings if p.name.endswith(".old")), key=lambda p: p.stat().st_mtime)
    if olds and not os.path.lexists(path):
        backup = olds.pop()  # the newest: the directory that was at `path` when the swap was killed
        try:
            os.replace(backup, path)
        except OSError as error:
            raise UserError(f"{path} is missing and could not be restored from {backup} ({error.strerror}); "
                            f"rename it back by hand or fix the permissions of {parent}") from None
    for stale in siblings:
        if stale.exists() and stale != path:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                try:
                    stale.unlink()
                except OSError:
                    pass


RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where the system cannot."""
    if os.environ.get("MINIGPT_TEST_PORTABLE_SWAP") or not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system or kernel without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(new: Path, path: Path) -> None:
    """Put `new` at `path` and delete the old directory.

    On Linux one renameat2(RENAME_EXCHANGE) swaps the two names atomically:
    there is no instant without a complete directory at `path`. Elsewhere the
    old directory is moved aside, the new one moved in, the old one deleted; if
    a kill falls between the two moves, recover_directory puts the old one back.
    """
    if _exchange(new, path):
        _fsync_directory(path.parent)
        _test_pause("swapped", path)
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old directory
        return
    old = _temporary_sibling(path, "old")
    os.replace(path, old)
    try:
        _test_pause("aside", path)
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    _fsync_directory(path.parent)
    _test_pause("swapped", path)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    """Make a rename inside `path` durable (where the platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            _fsync_file(Path(directory) / name)
        _fsync_directory(Path(directory))


def _test_pause(point: str, path: Path) -> None:
    """Tests only: MINIGPT_TEST_PAUSE_AT=<point>:<directory name> stops here, so a test can kill the process at this instant."""
    if os.environ.get("MINIGPT_TEST_PAUSE_AT") == f"{point}:{path.name}":
        print(f"paused at {point}:{path.name}", file=sys.stderr, flush=True)
        time.sleep(120)


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


def whole_number_up_to(limit: int, why: str) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to `limit`; `why` says what the limit protects (work the user asked for)."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:,} ({why}), got {value:,}")
        return value
    return parse


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


MAX_THREADS = 256


def apply_threads(threads: int | None) -> None:
    """--threads: how many CPU threads torch uses (None keeps torch's own choice: one per core, or OMP_NUM_THREADS).

    The scripts also set OMP_WAIT_POLICY=PASSIVE before torch loads (docs/threads.md has the measurements):
    on a machine shared with other busy processes, threads that spin while they wait made each step six to
    eight times slower than one thread (medians, one shared machine); sleeping threads do not, and the results are the same bits."""
    if threads is not None:
        torch.set_num_threads(threads)


def require_number(value, what: str, integer: bool = False):
    """`value` if it is a finite number (an int, if `integer`), else a ValueError naming `what`; a bool is not a number."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(f"{what} must be {'a whole number' if integer else 'a number'}, got {value!r}")
    return value


def add_common_flags(parser: argparse.ArgumentParser, seed: int, threads: int | None = None) -> None:
    parser.add_argument("--seed", type=seed_value, default=seed, help="random seed: the same seed on the same machine gives the same losses")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (for logs and tests)")
    chosen = "" if threads is not None else f" (default: torch's choice, {torch.get_num_threads()} here)"
    parser.add_argument("--threads", type=whole_number_up_to(MAX_THREADS, "more threads than cores only adds waiting"), default=threads,
                        help=f"CPU threads for torch{chosen}; use 1 on a machine shared with other busy processes")
