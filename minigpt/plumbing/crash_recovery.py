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
from pathlib import Path

from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import parse_json


def _temporary_sibling(path: Path, kind: str) -> Path:
    """`.name.<pid>-<random>.<kind>` beside `path`: the pid tells recovery whether its writer is still alive."""
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _writer_alive(sibling: Path) -> bool:
    """Whether the process whose pid names this temporary still runs."""
    try:
        pid = int(sibling.name.rsplit(".", 2)[1].split("-")[0])
    except (ValueError, IndexError):
        return False
    return _pid_alive(pid)  # this process too: a save in progress (the `finally` that made it removes it)


def _read_lock(lock: Path) -> dict | None:
    try:
        value = parse_json(lock.read_text(encoding="utf-8")[:4096])
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
