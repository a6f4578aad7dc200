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
# what a temporary's name adds to its output's: ".", ".", the pid (pid_max is at most 2**22), "-", 8 hex digits, ".tmp"
TEMPORARY_BYTES = len(".." + str(2**22) + "-" + "0" * 8 + ".tmp")
LOCK_BYTES = len("." + ".lock")


def check_name_length(path: Path, added: int = TEMPORARY_BYTES) -> None:
    """A UserError, before any work, if the files written beside `path` (temporaries, or only its lock) could not be
    named: its own name is legal, but theirs add `added` bytes to it, and a file name may have NAME_MAX bytes."""
    length = len(os.fsencode(path.name))
    if length > NAME_MAX - added:
        raise UserError(f"the output name {path.name[:24]}... is {length} bytes long, and the files written beside it add "
                        f"{added} to it: use a name of at most {NAME_MAX - added} bytes; {another_output()}")


def _temporary_sibling(path: Path, kind: str) -> Path:
    """`.name.<pid>-<random>.<kind>` beside `path`: the pid tells recovery whether its writer is still alive."""
    check_name_length(path)
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _writer_alive(sibling: Path) -> bool:
    """Whether the process whose pid names this temporary (a TEMPORARY_NAME) still runs."""
    match = TEMPORARY_NAME.fullmatch(sibling.name)
    return match is not None and _pid_alive(int(match["pid"]))  # this process too: a save in progress


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


# _temporary_sibling's names, matched whole (fullmatch): DOTALL and [0-9], so an output named with a newline or a
# non-ASCII digit is still told apart. Digits hold no dot, so the name before them is read one way only.
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)-[0-9a-f]{8}\.(?P<kind>tmp|old)", re.DOTALL)


def remove_stale_temporaries(directory: Path) -> None:
    """Inside `directory`: finish or delete every temporary of this project's naming whose writer is dead."""
    try:
        names = {match["name"] for entry in directory.iterdir() if (match := TEMPORARY_NAME.fullmatch(entry.name))}
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
        siblings = [p for p in parent.iterdir() if (match := TEMPORARY_NAME.fullmatch(p.name)) and match["name"] == path.name]
    except OSError:
        return
    lock = parent / f".{path.name}.lock"
    holder = _read_lock(lock)
    if holder is not None and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
        lock.unlink(missing_ok=True)  # output_lock's file of a run that was killed
    siblings = [p for p in siblings if not _writer_alive(p)]
    # an .old is a whole directory moved aside; a link or file of that name is never restored (and is deleted below)
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
