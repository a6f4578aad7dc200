"""The grading process: judge submissions whose code runs only in a sandboxed worker.

This process never imports student code. For each submission it copies the
student's lora/ into a fresh temporary directory; a worker (worker.py) forks
one child per rubric line there, and the child runs the student's code on the
inputs this process chose (fresh random values every run) and sends back raw
results, on a pipe of its own. Here each answer is validated (the nonce of
this request, a known status, JSON of the expected shape) and judged
(judge_layer.py, judge_model.py). So:

* a submission cannot replace the checks or write a verdict: there is none in
  the worker, only measurements, and a forged measurement passes only if it is
  what LoRA computes for inputs it could not know in advance;
* the worker's code is the text this module read at import, before any
  student code ran, so rewriting the grader's files on disk changes nothing;
  and any change to them while a submission is graded withholds its score
  (`tampered` in the report);
* a check that hangs, crashes or kills its process costs that line only;
  where Linux allows user namespaces the worker is process 1 of its own PID
  namespace, so student code can neither see nor signal this process.
"""

import contextlib
import hashlib
import json
import os
import queue
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from coursework import judge_layer, judge_model
from coursework.judging import Draw, Malformed
from coursework.probes import Fail
from coursework.rubric import MAX_SCORE, POINTS, RUBRIC
from coursework.worker import BOOT, one_line

GRADER_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 20.0  # seconds per check; a correct check takes well under one
STARTUP_TIMEOUT = 120.0  # importing torch on a loaded machine
REPLY_GRACE = 30.0  # the worker's own watchdog answers first; this one covers the worker itself hanging
IDS = [line.id for line in RUBRIC]
TIMEOUTS_IN_A_ROW = 3
SUBMISSION_LIMIT = 16 << 20  # bytes of lora/ copied per submission
WORKER_MODULES = ("coursework.probes", "coursework.measure_layer", "coursework.measure_model", "coursework.worker")
GUARDED = ("coursework", "minigpt")  # the folders whose .py files grade and run the checks


def _read(name: str) -> str:
    return (GRADER_ROOT / (name.replace(".", "/") + ".py")).read_text(encoding="utf-8")


def fingerprint() -> dict:
    """{relative path: sha256} of the grader's own Python files."""
    return {str(path.relative_to(GRADER_ROOT)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in GUARDED for path in sorted((GRADER_ROOT / folder).rglob("*.py"))
            if "__pycache__" not in path.parts}


# Read once, now: before any student code has run in this process's lifetime.
WORKER_SOURCES = [(name, _read(name)) for name in WORKER_MODULES]
MINIGPT_FILES = {str(path.relative_to(GRADER_ROOT / "minigpt")): path.read_bytes()  # minigpt/plumbing/ included
                 for path in sorted((GRADER_ROOT / "minigpt").rglob("*.py")) if "__pycache__" not in path.parts}
FINGERPRINT = fingerprint()
JUDGES = {line_id: (getattr(module, f"inputs_{line_id}"), getattr(module, f"judge_{line_id}"))
          for module in (judge_layer, judge_model) for line_id in IDS if hasattr(module, f"judge_{line_id}")}
ISOLATION = ["unshare", "--user", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc"]


def namespaces_available() -> bool:
    try:
        return subprocess.run(ISOLATION + ["true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def copy_submission(source: Path, destination: Path) -> None:
    """Copy the regular files and folders of lora/ only: no links, pipes or devices, at most SUBMISSION_LIMIT bytes."""
    if not source.is_dir() or source.is_symlink():
        raise ValueError("it is not a folder")
    total = 0
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = [name for name in subfolders if name != "__pycache__" and not os.path.islink(os.path.join(folder, name))]
        target = destination / os.path.relpath(folder, source)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            status = os.lstat(os.path.join(folder, name))
            if not stat.S_ISREG(status.st_mode):
                continue
            total += status.st_size
            if total > SUBMISSION_LIMIT:
                raise ValueError(f"more than {SUBMISSION_LIMIT >> 20} MB")
            shutil.copyfile(os.path.join(folder, name), target / name, follow_symlinks=False)


class WorkerGone(Exception):
    """The worker itself died, hung or answered nonsense; a fresh one takes over."""


class Worker:
    """One sandboxed worker process and a thread that queues its reply lines."""

    def __init__(self, scratch: Path, isolate: bool):
        """Start the process; `handshake()` then sends it its code and waits until it is ready."""
        self.scratch = scratch
        try:
            self.log = tempfile.TemporaryFile(dir=scratch)
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(scratch), "OMP_NUM_THREADS": "1", "LC_ALL": "C.UTF-8"}
            self.process = subprocess.Popen((ISOLATION if isolate else []) + [sys.executable, "-I", "-c", BOOT],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                            bufsize=1, cwd=scratch, env=env, start_new_session=True)
        except OSError as error:  # no Python to start, or the scratch folder is gone (grading stopped)
            raise WorkerGone(f"the grading process did not start ({error.strerror or error})") from None
        self.replies: queue.Queue = queue.Queue()
        self.isolation = "?"
        threading.Thread(target=self._read, daemon=True).start()

    def handshake(self) -> None:
        try:
            minigpt_root = self.scratch / "instructor"
            for name, data in MINIGPT_FILES.items():
                (minigpt_root / "minigpt" / name).parent.mkdir(parents=True, exist_ok=True)
                (minigpt_root / "minigpt" / name).write_bytes(data)
        except OSError as error:
            raise WorkerGone(f"the grading process did not start ({error.strerror or error})") from None
        self._send({"sources": WORKER_SOURCES, "minigpt_root": str(minigpt_root), "scratch": str(self.scratch)})
        ready = self._reply(STARTUP_TIMEOUT)
        if not isinstance(ready, dict) or ready.get("event") != "ready":
            try:
                self.log.seek(0)
                errors = [line for line in self.log.read().decode(errors="replace").splitlines() if "rror" in line]
            except (OSError, ValueError):  # stopped while starting: the log is closed already
                errors = []
            raise WorkerGone(f"the grading process did not start{': ' + errors[-1][:200] if errors else ''}")
        self.isolation = ready.get("isolation", "?")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.replies.put(line)
        self.replies.put(None)

    def _send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except OSError as error:
            raise WorkerGone(f"the grading process is gone ({error.strerror or error})") from None

    def _reply(self, timeout: float):
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            return "timeout"
        if line is None:
            return None
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return "garbled"

    def run(self, line_id: str, path: Path, inputs: dict, timeout: float) -> dict:
        """The worker's validated answer: {"status", "exit", "payload", "stderr"}."""
        nonce = secrets.token_hex(16)
        self._send({"nonce": nonce, "id": line_id, "path": str(path), "inputs": inputs, "timeout": timeout})
        reply = self._reply(timeout + REPLY_GRACE)
        valid = (isinstance(reply, dict) and reply.get("nonce") == nonce
                 and reply.get("status") in ("ok", "timeout", "died", "too_long")
                 and isinstance(reply.get("exit"), int) and isinstance(reply.get("payload"), str)
                 and isinstance(reply.get("stderr"), str))
        if not valid:
            code = self.process.poll()
            raise WorkerGone("the grading process died" + (f" (exit status {code})" if code is not None else " or hung"))
        return reply

    def stop(self) -> None:
        if self.process.poll() is None:
            try:  # its own session: the whole group; with unshare, --kill-child takes the namespace along
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
        self.process.wait()
        self.log.close()


def verdict(line_id: str, inputs: dict, reply: dict, timeout: float) -> tuple[bool, str]:
    """(passed, hint) from one validated worker reply."""
    status = reply["status"]
    if status == "timeout":
        return False, f"did not finish within {timeout:g} s (an infinite loop?)"
    if status == "too_long":
        return False, "the check's results were larger than the grader accepts"
    if status == "died":
        detail = reply["stderr"][:200]
        return False, f"the grading process died (exit status {reply['exit']})" + (f": {detail}" if detail else "")
    try:
        answer = json.loads(reply["payload"])
    except (ValueError, RecursionError):  # not JSON, or nested deeper than any measurement returns
        return False, "the worker's result could not be read (not JSON)"
    if not isinstance(answer, dict) or len(answer) != 1 or next(iter(answer)) not in ("raw", "fail", "error"):
        return False, "the worker's result could not be read (unexpected fields)"
    kind, value = next(iter(answer.items()))
    if kind != "raw":
        text = " ".join(str(value).split())[:300]
        return False, text if kind == "fail" else f"your code raised {text}"
    try:
        JUDGES[line_id][1](inputs, value)
        return True, ""
    except Malformed as error:
        return False, f"the worker's result could not be read: {error}"
    except Fail as failure:
        return False, str(failure)
    except Exception as error:  # an answer shaped so oddly that the judge tripped on it
        return False, f"the worker's result could not be read: {one_line(error)}"


class Grader:
    """Grades one submission after another with one worker, restarted whenever it is lost."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, isolate: bool | None = None):
        self.timeout = timeout
        self.isolate = namespaces_available() if isolate is None else isolate
        self.scratch = Path(tempfile.mkdtemp(prefix="coursework-grading-"))
        self.worker: Worker | None = None
        self.closed = False
        self.worker_lock = threading.Lock()  # close() (the main thread, on Ctrl-C) and a grading thread may both stop it

    def grade(self, path: Path, only: list | None = None) -> dict:
        """The report for one submission; `only`: grade just these rubric lines (the rest read "not run")."""
        path = Path(path)
        copy = Path(tempfile.mkdtemp(prefix="submission-", dir=self.scratch))
        results: dict[str, tuple[bool, str]] = {}
        try:
            copy_submission(path / "lora", copy / "lora")
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            results = {line_id: (False, f"could not copy the submission's lora/ ({reason})") for line_id in IDS}
        draw, timeouts = Draw(secrets.randbits(62)), 0
        for line_id in only or IDS:
            if line_id in results:
                continue
            if timeouts >= TIMEOUTS_IN_A_ROW:  # e.g. an import that never returns: stop paying a timeout per line
                results[line_id] = (False, f"not run: {TIMEOUTS_IN_A_ROW} checks in a row did not finish")
                continue
            results[line_id] = self._check(line_id, copy, Draw(draw.seed()))
            timeouts = timeouts + 1 if results[line_id][1].startswith("did not finish") else 0
        shutil.rmtree(copy, ignore_errors=True)
        now = fingerprint()
        tampered = sorted(name for name in set(now) | set(FINGERPRINT) if now.get(name) != FINGERPRINT.get(name))
        worker = self.worker  # once: close() may clear it meanwhile
        return report(path, results, worker.isolation if worker else "none", tampered)

    def _check(self, line_id: str, copy: Path, draw: Draw) -> tuple[bool, str]:
        if self.closed:  # before drawing inputs: a stopped grader's thread must reach its end quickly, torch work and all
            return False, "not run: grading was stopped"
        inputs = JUDGES[line_id][0](draw)
        try:
            worker = self.worker
            if worker is None:
                worker = self.worker = Worker(self.scratch, self.isolate)  # registered before the handshake: close() stops it
                if self.closed:  # close() ran while the process started and found no worker to stop: stop it here
                    self.close_worker()
                    return False, "not run: grading was stopped"
                worker.handshake()  # `worker`, not self.worker, which close() may clear meanwhile
            return verdict(line_id, inputs, worker.run(line_id, copy, inputs, self.timeout), self.timeout)
        except WorkerGone as gone:
            self.close_worker()
            return False, str(gone)

    def close_worker(self) -> None:
        with self.worker_lock:
            if self.worker is not None:
                self.worker.stop()
                self.worker = None

    def close(self) -> None:
        self.closed = True
        self.close_worker()
        shutil.rmtree(self.scratch, ignore_errors=True)


def report(path: Path, results: dict, isolation: str, tampered: list) -> dict:
    lines = []
    for line in RUBRIC:
        passed, message = results.get(line.id, (False, "not run"))
        passed = passed and not tampered
        lines.append({"id": line.id, "points": line.points if passed else 0, "max_points": line.points,
                      "passed": passed, "message": message})
    return {"path": str(path), "lora": str(Path(path) / "lora"), "score": sum(row["points"] for row in lines),
            "max_score": MAX_SCORE, "isolation": isolation, "tampered": tampered, "lines": lines}


@contextlib.contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Ctrl-C does nothing inside (only the main thread can set a signal handler; elsewhere nothing changes).

    For the cleanup after a first Ctrl-C: it kills the workers and removes their copies in well under a
    second, and a second Ctrl-C pressed meanwhile would stop it halfway and leave them behind.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    while True:
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            break
        except KeyboardInterrupt:  # a Ctrl-C still pending is raised by signal.signal itself, before the change
            continue
    try:
        yield
    finally:  # None: a handler set outside Python, which cannot be put back; Python's own is the usual one
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def grade_paths(paths: list[Path], timeout: float = DEFAULT_TIMEOUT, workers: int = 1, isolate: bool | None = None,
                only: list | None = None, progress=None, graders: list | None = None) -> list[dict]:
    """One report per path, in order; `workers` sandboxed workers share the batch; `only[i]`: the lines for path i.

    `graders`: Graders to use (and leave open) instead of `workers` new ones, e.g. to share started
    workers between batches. Ctrl-C (KeyboardInterrupt) stops every worker and removes every temporary
    copy before it propagates.
    """
    jobs: queue.Queue = queue.Queue()
    for index, path in enumerate(paths):
        jobs.put((index, Path(path)))
    reports: list = [None] * len(paths)
    owned = graders is None
    graders = [] if owned else list(graders)
    stopping, printing = threading.Event(), threading.Lock()

    def drain(grader: Grader) -> None:
        while not stopping.is_set():
            try:
                index, path = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                reports[index] = grader.grade(path, only[index] if only else None)
            except Exception:
                if stopping.is_set():  # stopped under it (its scratch folder removed): quietly, the run is ending
                    return
                raise
            if progress is not None:
                with printing:
                    progress(reports[index])

    threads: list[threading.Thread] = []
    try:
        if owned:  # inside the try: a Ctrl-C while the graders start still removes the scratch folders made so far
            isolate = namespaces_available() if isolate is None else isolate
            for _ in range(max(1, min(workers, len(paths)))):
                graders.append(Grader(timeout, isolate))
        for grader in graders:
            grader.timeout = timeout
            threads.append(threading.Thread(target=drain, args=(grader,), daemon=True))
            threads[-1].start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        for grader in graders if owned else ():
            grader.close()
    except BaseException:
        with ctrl_c_ignored():  # a second Ctrl-C must not cut this short: it would leave workers and copies behind
            stopping.set()
            for grader in graders:
                grader.close()  # on Ctrl-C this kills the workers, so the threads return at once
            for thread in (thread for thread in threads if thread.ident is not None):  # those started
                # to their end, not for a few seconds: a thread still inside torch when the interpreter exits is torn
                # down mid-call, and the process aborts ("terminate called without an active exception")
                thread.join()
            for grader in graders:  # again: a thread that was copying a submission may have re-created scratch folders
                grader.close()
        raise
    return reports


assert set(POINTS) == set(IDS) == set(JUDGES)
