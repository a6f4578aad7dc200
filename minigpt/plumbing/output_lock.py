"""One run at a time per output: `.<name>.lock` beside it, taken over when its holder has died.

Two runs writing one results folder would each swap in their own set and one
run's models would be silently dropped; the lock refuses the second run in one line.
"""

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from minigpt.plumbing.atomic_writes import ensure_writable_dir
from minigpt.plumbing.crash_recovery import LOCK_BYTES, TEMPORARY_BYTES, _pid_alive, _read_lock, check_name_length
from minigpt.plumbing.errors import UserError, another_output


@contextmanager
def output_lock(path: str | Path, replaced_whole: bool = True) -> Iterator[None]:
    """Hold `.<name>.lock` beside the output `path` while a run writes it: a second run on the same --out is refused.

    Two runs writing one results folder would each swap in their own set and one run's models would be
    silently dropped. The lock file names its holder (pid, host, start time); a lock whose process has
    died on this host (kill -9, power loss) is taken over, so a crash never blocks the next run. If the run fails,
    the output folder itself (not its parents) is removed if it did not exist before this run and is still empty.
    """
    path = Path(os.path.realpath(path))  # a symlinked --out and its target share one lock
    # now, not after the training: what is written beside it must have a name (temporaries, if the output is swapped in
    # whole; else only the lock: compare.py and experiments.py write files inside their folder)
    check_name_length(path, TEMPORARY_BYTES if replaced_whole else LOCK_BYTES)
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
            raise UserError(f"{path} is being written by another run ({who}); wait for it to finish or {another_output()} "
                            f"(if that run is gone, delete {lock})") from None
        except OSError as error:
            raise UserError(f"cannot create the lock file {lock} ({error.strerror}); {another_output()}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(json.dumps(holder) + "\n")
        except OSError as error:  # a full disk: the file was created, its few bytes could not be written
            lock.unlink(missing_ok=True)
            raise UserError(f"cannot write the lock file {lock} ({error.strerror}); free some disk space "
                            f"or {another_output()}") from None
        break
    else:
        raise UserError(f"could not take the lock {lock}; another run keeps taking it; try again")
    existed = os.path.lexists(path)
    try:
        yield
    except BaseException:
        if not existed:  # made by this run to check it can write there, then the run failed: no empty folder left
            try:
                path.rmdir()  # only if empty: anything saved stays
            except OSError:
                pass
        raise
    finally:
        if (_read_lock(lock) or {}).get("pid") == holder["pid"]:
            lock.unlink(missing_ok=True)
