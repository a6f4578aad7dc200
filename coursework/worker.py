"""The sandboxed worker: a clean process that forks one short-lived child per check.

Started by runner.py. Its code does not come from the disk: the grading
process read these modules once, before any student code ran, and sends their
text on stdin (`BOOT` below execs it), so a submission that rewrites the
grader's files cannot change what grades the next check or the next student.
Where the system allows it (Linux with user namespaces), runner.py starts it
as process 1 of its own PID namespace: student code then sees no process
outside it, and the kernel drops a SIGKILL that a child sends to process 1.

For each job, one JSON line {"nonce", "id", "path", "inputs"}, this process
  1. opens a fresh pipe and forks a child; the child closes every other file
     descriptor (so it cannot reach the grader's channel), moves to the
     submission's temporary copy, imports the student's `lora` from there and
     calls `measure_<id>(inputs)`, which returns raw results (numbers, lists,
     flags), never a verdict; it writes them, JSON, on its own pipe and exits;
  2. reads that pipe until end of file, at most `timeout` seconds and
     `LIMIT` bytes, then kills the child and everything it started;
  3. answers the grader with one JSON line {"nonce", "status", "exit",
     "payload", "stderr"}; the grader validates it and judges the payload.
Student output (prints, tracebacks) goes to a per-check file whose last error
line the grader may quote.
"""

import json
import os
import select
import signal
import sys
import tempfile
import time

LIMIT = 8 << 20  # bytes of raw results one check may return

# Run as `python -I -c BOOT`: a package `coursework` built from the module texts on stdin, then main().
BOOT = """
import json, sys, types
boot = json.loads(sys.stdin.readline())
package = types.ModuleType("coursework")
package.__path__ = []
sys.modules["coursework"] = package
for name, source in boot["sources"]:
    module = types.ModuleType(name)
    module.__file__ = "<grader>/" + name
    sys.modules[name] = module
    setattr(package, name.rpartition(".")[2], module)
    exec(compile(source, module.__file__, "exec"), module.__dict__)
sys.modules["coursework.worker"].main(boot)
"""


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, short enough for a scorecard."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def measures() -> dict:
    from coursework import measure_layer, measure_model

    return {name[len("measure_"):]: function for module in (measure_layer, measure_model)
            for name, function in vars(module).items() if name.startswith("measure_")}


def not_dumpable() -> None:
    """Children may not open this process's /proc/1/fd/* (the grader's channel) or read its memory."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def limit_resources(timeout: float) -> None:
    """Caps a runaway submission: file size (a full disk), memory, CPU time."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
        resource.setrlimit(resource.RLIMIT_CPU, (int(timeout) + 5, int(timeout) + 5))
        with open("/proc/self/statm") as statm:  # virtual size now, in pages: torch alone maps a few GB
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (mapped + (4 << 30), mapped + (4 << 30)))
    except (ImportError, OSError, ValueError):  # not Linux: the timeout alone guards
        pass

def child(job: dict, write_end: int, log: int, base_path: list, functions: dict) -> None:
    """In the forked child: cut every tie to the grader, run one measurement, write it, exit."""
    status = 0
    try:
        os.setsid()
        limit_resources(job["timeout"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, write_end)
        os.closerange(write_end + 1, 1 << 16)
        sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.chdir(job["path"])
        sys.path[:] = [job["path"]] + base_path
        import torch

        torch.manual_seed(0)
        function = functions[job["id"]]
        try:
            answer = {"raw": function(job["inputs"])}
        except BaseException as error:  # student code may raise anything, SystemExit included
            fail = type(error).__name__ == "Fail" and type(error).__module__ == "coursework.probes"
            answer = {"fail": str(error)} if fail else {"error": one_line(error)}
        data = json.dumps(answer).encode()
        while data:
            data = data[os.write(write_end, data[:1 << 16]):]
    except BaseException:
        status = 70
    finally:
        os._exit(status)


def collect(read_end: int, pid: int, timeout: float) -> tuple[bytes, str]:
    """What the child wrote before closing its pipe, and "ok", "timeout" or "too_long"."""
    chunks, size, deadline = [], 0, time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([read_end], [], [], left)[0]:
            return b"".join(chunks), "timeout"
        chunk = os.read(read_end, 1 << 16)
        if not chunk:
            return b"".join(chunks), "ok"
        chunks.append(chunk)
        size += len(chunk)
        if size > LIMIT:
            return b"", "too_long"


def kill_everything_but_me(pid: int) -> int:
    """Kill the child and all it started; return the child's exit status (negative: a signal)."""
    if os.getpid() == 1:  # our own PID namespace: -1 reaches every other process in it
        os.kill(-1, signal.SIGKILL)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.getpid() == 1:  # as process 1 we also reap the orphans
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
    return os.waitstatus_to_exitcode(status)


def last_error_line(log) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if "rror" in line]
    return "".join(c for c in lines[-1][:200] if c.isprintable()) if lines else ""


def main(boot: dict) -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    requests = os.fdopen(os.dup(0), "r")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    not_dumpable()
    import torch

    torch.set_num_threads(1)  # tiny tensors; forked children must not inherit a thread pool
    sys.path.insert(0, boot["minigpt_root"])  # the instructor's minigpt, imported now, before any student code
    import minigpt.config  # noqa: F401
    import minigpt.model  # noqa: F401

    base_path = list(sys.path)
    functions = measures()
    channel.write(json.dumps({"event": "ready", "isolation": "pid namespace" if os.getpid() == 1 else "process group"}) + "\n")
    for line in requests:
        job = json.loads(line)
        nonce = job.pop("nonce")  # the child never holds the nonce of the answer the grader will accept
        read_end, write_end = os.pipe()
        log = tempfile.TemporaryFile(dir=boot["scratch"])
        pid = os.fork()
        if pid == 0:
            child(job, write_end, log.fileno(), base_path, functions)
        os.close(write_end)
        data, status = collect(read_end, pid, job["timeout"])
        os.close(read_end)
        code = kill_everything_but_me(pid)
        if status == "ok" and not data:
            status = "died"
        channel.write(json.dumps({"nonce": nonce, "status": status, "exit": code,
                                  "payload": data.decode(errors="replace"), "stderr": last_error_line(log)}) + "\n")
        log.close()
