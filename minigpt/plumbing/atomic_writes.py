"""Writing outputs atomically: a file or a whole directory is replaced complete, or not at all.

Everything is written into a temporary beside the output, fsynced, then renamed
(or, for a directory, swapped) into place, so no interrupted run leaves a
half-written file or directory where a good one used to be. What a killed run
leaves behind is cleared by crash_recovery.py. Nothing here is about GPTs or LoRA.
"""

import ctypes
import errno
import os
import secrets
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from minigpt.plumbing.crash_recovery import _temporary_sibling, recover_directory, remove_stale_temporaries
from minigpt.plumbing.errors import UserError, another_output, first_few


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
        raise UserError(f"cannot create output directory {path} ({error.strerror}); {another_output()}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output directory {path} is not writable; fix its permissions or {another_output()}")
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
        raise UserError(f"cannot write in {path.parent} ({error.strerror}); {another_output()}") from None
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
        raise UserError(f"{path} exists and is not a directory; {another_output()}")
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
                f"{path} already holds files this script does not write ({first_few(foreign)}); "
                f"replacing it would delete them, so {another_output()}"
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
    try:  # the writable-looking parent may still refuse a new entry: /proc answers "no such file or directory"
        tmp.mkdir()
    except OSError as error:
        raise UserError(f"cannot write in {path.parent} ({error.strerror}); {another_output()}") from None
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


class WriteError(UserError):
    """A write that failed for lack of space, a file-size limit or permissions; remembers the path and the reason."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"could not write {path} ({reason}); the previous {path.name} is unchanged; "
                         f"free some disk space or {another_output()}")


@contextmanager
def saving_errors(path: Path) -> Iterator[None]:
    """An OSError while saving (no space, file-size limit, permission) becomes one line naming `path`.

    torch.save reports a failed write as a RuntimeError from its zip writer; that is the same failure.
    """
    try:
        yield
    except OSError as error:
        raise WriteError(path, error.strerror or str(error)) from None
    except RuntimeError as error:
        if not any(marker in str(error).lower() for marker in ("write", "inline_container", "unexpected pos")):
            raise  # not a failed write: a bug, which should show its traceback
        raise WriteError(path, "the file write failed: disk full or file-size limit?") from None


@contextmanager
def staged_files(directory: str | Path) -> Iterator[Path]:
    """Yield a staging folder; the files written into it replace their namesakes in `directory` together, once
    every one of them is complete, so a full disk or a file-size limit halfway changes none of them.

    For several outputs that share a folder with other files (compare.py's tables and plots sit beside the
    models), where swapping the whole folder is not an option. The staging folder is named like every other
    temporary, so one left by a killed run is removed by the next. A kill during the final renames, which take
    microseconds, could leave some files new and some old.
    """
    directory = ensure_writable_dir(directory)
    staging = _temporary_sibling(directory / "outputs", "tmp")
    try:
        staging.mkdir()
    except OSError as error:
        raise UserError(f"cannot write in {directory} ({error.strerror}); free some disk space or fix its permissions") from None
    try:
        yield staging
        names = sorted(entry.name for entry in staging.iterdir())
        for name in names:
            os.replace(staging / name, directory / name)
        _fsync_directory(directory)
    except WriteError as error:
        raise UserError(f"could not write {directory / error.path.name} ({error.reason}); nothing in {directory} was "
                        f"changed; free some disk space or {another_output()}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
