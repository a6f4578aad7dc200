"""The grader's parent side: feed repository copies to worker processes, under a watchdog.

Each worker (worker.py) imports torch once and grades copy after copy. The
runner waits at most `timeout` seconds for each check's result; a check that
loops forever, or a crash that takes the process down, costs that check's
points only: the worker is killed, a fresh one starts, and grading resumes at
the next check. Several workers can run side by side (`workers`) to grade a
batch of copies, e.g. the gallery of wrong implementations.
"""

import json
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from coursework.rubric import MAX_SCORE, POINTS, RUBRIC

GRADER_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 20.0  # seconds per check; a correct check takes well under one
STARTUP_TIMEOUT = 120.0  # importing torch on a loaded machine
IDS = [line.id for line in RUBRIC]

# -I: ignore PYTHONPATH and the current directory. The grader's own package is imported
# from its root, which then leaves sys.path, so `lora` and `minigpt` can only come from
# the graded copy (never the grader's solution, even where the copy lacks them).
BOOTSTRAP = (
    "import sys; root = sys.argv[1]; sys.path.insert(0, root); import coursework.worker as worker; "
    "sys.path.remove(root); worker.main()"
)


class Worker:
    """One child process and a thread that turns its protocol lines into events on a queue."""

    def __init__(self):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", BOOTSTRAP, str(GRADER_ROOT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1,
        )
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self.events.put(None)  # end of file: the process is gone

    def next_event(self, timeout: float):
        """The next event; None if the process died; "timeout" if nothing came in time."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return "timeout"

    def send(self, job: dict) -> None:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()

    def last_error_line(self) -> str:
        """The last line of stderr that reads like an error (student prints land there too)."""
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().decode(errors="replace").splitlines() if "rror" in line]
        return lines[-1][:200] if lines else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


class Grader:
    """Grades one path after another on a worker that it restarts whenever a check goes wrong."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.worker: Worker | None = None

    def _ready_worker(self) -> Worker:
        if self.worker is None:
            self.worker = Worker()
            event = self.worker.next_event(STARTUP_TIMEOUT)
            if not isinstance(event, dict) or event.get("event") != "ready":
                detail = self.worker.last_error_line()
                self._drop_worker()
                raise RuntimeError(f"the grading process did not start{': ' + detail if detail else ''}")
        return self.worker

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def grade(self, path: Path) -> dict:
        results: dict[str, tuple[bool, str]] = {}
        graded = {"file": None}
        next_index = 0
        while next_index < len(IDS):
            next_index = self._run_from(path, next_index, results, graded)
        return report(path, graded["file"], results)

    def _run_from(self, path: Path, start: int, results: dict, graded: dict) -> int:
        """Run the checks from IDS[start] on; return where to resume (len(IDS) once all have run)."""
        try:
            worker = self._ready_worker()
        except RuntimeError as error:  # no Python or no torch: every line fails, the grader does not
            for line_id in IDS[start:]:
                results[line_id] = (False, str(error))
            return len(IDS)
        worker.send({"path": str(path), "skip": start})
        current, resume = None, start
        while True:
            event = worker.next_event(self.timeout)
            kind = event.get("event") if isinstance(event, dict) else event
            if kind == "graded":
                graded["file"] = event.get("file")
            elif kind == "start":
                current = event["id"]
            elif kind == "result":
                results[event["id"]] = (event["passed"], event["message"])
                current, resume = None, IDS.index(event["id"]) + 1
            elif kind == "done":
                return len(IDS)
            else:  # a timeout or a dead process: blame the running check, then start afresh
                if kind == "timeout":
                    why = f"did not finish within {self.timeout:g} s (an infinite loop?)"
                else:
                    detail = worker.last_error_line()
                    why = f"the grading process died (exit status {worker.process.wait()})" + (f": {detail}" if detail else "")
                self._drop_worker()
                if current is not None:
                    results[current] = (False, why)
                    return IDS.index(current) + 1
                if resume > start:  # between two checks: go on with the next one
                    return resume
                for line_id in IDS[start:]:  # importing the package itself hung or crashed
                    results[line_id] = (False, f"importing lora {why}")
                return len(IDS)

    def close(self) -> None:
        self._drop_worker()


def report(path: Path, graded_file, results: dict) -> dict:
    lines = []
    for line in RUBRIC:
        passed, message = results.get(line.id, (False, "not run"))
        lines.append({"id": line.id, "points": line.points if passed else 0, "max_points": line.points,
                      "passed": passed, "message": message})
    return {"path": str(path), "lora": graded_file, "score": sum(row["points"] for row in lines),
            "max_score": MAX_SCORE, "lines": lines}


def grade_paths(paths: list[Path], timeout: float = DEFAULT_TIMEOUT, workers: int = 1) -> list[dict]:
    """One report per path, in order; `workers` child processes share the batch."""
    jobs: queue.Queue = queue.Queue()
    for index, path in enumerate(paths):
        jobs.put((index, Path(path)))
    reports: list = [None] * len(paths)

    def drain() -> None:
        grader = Grader(timeout)
        try:
            while True:
                try:
                    index, path = jobs.get_nowait()
                except queue.Empty:
                    return
                reports[index] = grader.grade(path)
        finally:
            grader.close()

    threads = [threading.Thread(target=drain) for _ in range(max(1, min(workers, len(paths))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports


assert set(POINTS) == set(IDS)
