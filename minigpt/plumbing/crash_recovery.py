"""What a killed run leaves behind, and how the next run clears it up.

Writers work in temporaries named `.<name>.<pid>-<random>.tmp|.old` beside their
output and hold `.<name>.lock` (output_lock.py); the pid tells a later run whether
the writer is still alive. recover_directory, run by every save and load, puts a
moved-aside directory back and deletes the leftovers of dead writers.
"""

import os
import re
import secrets
import shutil
import socket
import stat
from pathlib import Path

from minigpt.plumbing.errors import UserError, another_output
from minigpt.plumbing.reading import parse_json


NAME_MAX = 255  # bytes in one file name (Linux, macOS)
ADDED_BYTES = len("..4194304-0123abcd.tmp")  # what the longest temporary's name adds to its output's (pid_max is 2**22)


def check_name_length(path: Path) -> None:
    """A UserError, before any work, if the temporaries and lock beside `path` could not be named: its name is legal
    but each of them adds up to ADDED_BYTES to it, and the file system refuses names over NAME_MAX bytes."""
    length = len(os.fsencode(path.name))
    if length > NAME_MAX - ADDED_BYTES:
        raise UserError(f"the output name {path.name[:24]}... is {length} bytes long, and the temporary files written beside "
                        f"it add {ADDED_BYTES} to it: use a name of at most {NAME_MAX - ADDED_BYTES} bytes; {another_output()}")


def _temporary_sibling(path: Path, kind: str) -> Path:
    """`.name.<pid>-<random>.<kind>` beside `path`: the pid tells recovery whether its writer is still alive."""
    check_name_length(path)
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _writer_alive(sibling: Path) -> bool:
    """Whether the process whose pid names this temporary still runs."""
    try:
        pid = int(sibling.name.rsplit(".", 2)[1].split("-")[0])
    except (ValueError, IndexError):
        return False
    return _pid_alive(pid)  # this process too: a save in progress (the `finally` that made it removes it)


def _read_lock(lock: Path) -> dict | None:
    """The holder a lock file names, or None if it is no regular file or holds no JSON object in its first 4 KiB
    (a lock is a line of JSON: a larger one is not ours, and is never read whole)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: a FIFO put there must not hang the run
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            value = parse_json(file.read(4096).decode("utf-8"))
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _pid_alive(pid) -> bool:
    """Whether a process with this pid runs on this host. Anything but a positive int, or a number beyond the
    kernel's pid type (a tampered name or lock file), is no process."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
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
    try:  # exactly the names _temporary_sibling gives: `.res.backup.old` or another output's `.res.v2.<pid>-....old` are
        # the user's, never touched
        siblings = [p for p in parent.iterdir() if (match := TEMPORARY_NAME.match(p.name)) and match["name"] == path.name]
    except OSError:
        return
    lock = parent / f".{path.name}.lock"
    holder = _read_lock(lock)
    if holder is not None and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
        lock.unlink(missing_ok=True)  # output_lock's file of a run that was killed
    siblings = [p for p in siblings if not _writer_alive(p)]
    # an .old is a whole directory moved aside; a symlink or file of that name is no backup of ours
    olds = sorted((p for p in siblings if p.name.endswith(".old") and p.is_dir() and not p.is_symlink()), key=_modified)
    if olds and not os.path.lexists(path):
        backup = olds.pop()  # the newest: the directory that was at `path` when the swap was killed
        try:
            os.replace(backup, path)
        except OSError as error:
            raise UserError(f"{path} is missing and could not be restored from {backup} ({error.strerror}); "
                            f"rename it back by hand or fix the permissions of {parent}") from None
    for stale in siblings:
        if stale == path:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:  # a file, or a link (dangling or not: the link goes, never what it points to)
            try:
                stale.unlink()
            except OSError:
                pass


def _modified(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:  # removed meanwhile by another run's recovery
        return 0.0
