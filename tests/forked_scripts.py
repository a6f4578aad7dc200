"""Real script processes without paying torch's import in each: a server that imports torch once, then forks.

The crash-safety tests need real processes (kill -9, Ctrl-C, a file-size
limit), seven of them. A fresh Python spends 3-4 seconds of CPU importing
torch, torch._dynamo (which torch's optimizers load on first use) and
matplotlib before the script does anything. Here one server process imports
them once; each script run is a child forked from it, which runs
`python <script>.py args` from that point on: the script file is
executed as __main__, with its own pid, standard streams, working directory,
environment and resource limits, and it ends through the interpreter's normal
exit (an uncaught exception prints its traceback and exits 1). Only the
interpreter's start-up and the imports above are shared (matplotlib with its
Agg backend already chosen), and so is the environment as it was when the
server started: a variable read at start-up or import time (OMP_*, MPLBACKEND,
PYTHON*) has no effect when passed per run. The tests of the scripts'
start-up itself (Ctrl-C handling before torch loads, one-line errors from a
fresh process) still start a fresh Python.

The server is this file run as a program, speaking JSON over a socket pair;
the stderr pipe's descriptor travels with the request (SCM_RIGHTS).
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_MESSAGE = 1 << 16


class ForkedScript:
    """One script run: Popen's pid, send_signal, kill, poll and wait, with two differences: wait(timeout)
    kills the child when the time is up (then raises TimeoutExpired), and stderr is read with read_stderr,
    which has a time limit too."""

    def __init__(self, server: "ScriptServer", pid: int, stderr_fd: int):
        self._server, self.pid, self._stderr_fd, self._stderr, self.returncode = server, pid, stderr_fd, "", None

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def poll(self):
        if self.returncode is None:
            self.returncode = self._server.ask({"op": "poll", "pid": self.pid})["status"]
        return self.returncode

    def wait(self, timeout: float = 120):
        if self.returncode is None:
            try:
                self.returncode = self._server.ask({"op": "wait", "pid": self.pid}, timeout=timeout)["status"]
            except TimeoutError:
                self.kill()
                self.returncode = self._server.answer()["status"]
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout) from None
        return self.returncode

    def read_stderr(self, until: str | None = None, timeout: float = 120) -> str:
        """Everything the script has written to stderr, read until `until` appears (None: until it closes stderr).

        Past `timeout` seconds the script is killed and TimeoutExpired raised, so a hung script cannot hang the tests.
        """
        deadline = time.monotonic() + timeout
        while self._stderr_fd is not None and (until is None or until not in self._stderr):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._stderr_fd], [], [], left)[0]:
                self.kill()
                self.wait()
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout, stderr=self._stderr)
            chunk = os.read(self._stderr_fd, 1 << 16)
            if not chunk:
                os.close(self._stderr_fd)
                self._stderr_fd = None
            self._stderr += chunk.decode(errors="replace")
        return self._stderr

    def communicate(self, timeout: float = 120) -> str:
        """All of stderr (not Popen's (stdout, stderr) pair: stdout goes to /dev/null) once the script has ended."""
        err = self.read_stderr(timeout=timeout)
        self.wait(timeout)
        return err


class ScriptServer:
    """The process that has imported torch and forks one child per `start`."""

    def __init__(self):
        self._socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one message per request
        self._process = subprocess.Popen([sys.executable, __file__, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                         cwd=REPO, stdin=subprocess.DEVNULL)
        theirs.close()

    def start(self, script: str, args: list, env: dict | None = None, file_size_limit: int | None = None) -> ForkedScript:
        """Run REPO/<script>.py with `args` in a forked child (cwd REPO, stdout discarded, stderr a pipe)."""
        read_end, write_end = os.pipe()
        request = {"op": "start", "script": str(REPO / f"{script}.py"), "args": [str(a) for a in args],
                   "env": env or {}, "file_size_limit": file_size_limit}
        try:
            pid = self.ask(request, fds=[write_end])["pid"]
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return ForkedScript(self, pid, read_end)

    def ask(self, request: dict, fds: list[int] = (), timeout: float | None = None) -> dict:
        socket.send_fds(self._socket, [json.dumps(request).encode()], list(fds))
        self._socket.settimeout(timeout)
        try:
            return self.answer()
        finally:
            self._socket.settimeout(None)

    def answer(self) -> dict:
        message = self._socket.recv(MAX_MESSAGE)
        if not message:
            raise RuntimeError("the script server ended; its error is in this worker's captured stderr")
        return json.loads(message)

    def close(self) -> None:
        self._socket.close()  # the server reads end-of-file and exits
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _serve(connection: socket.socket) -> dict | None:
    """Answer requests until the tests close the socket; in a forked child, return that child's start request."""
    while True:
        message, fds, _, _ = socket.recv_fds(connection, MAX_MESSAGE, 1)
        if not message:
            return None
        request = json.loads(message)
        if request["op"] == "start":
            pid = os.fork()
            if pid == 0:
                connection.close()
                null = os.open(os.devnull, os.O_RDWR)
                for fd, target in ((null, 0), (null, 1), (fds[0], 2)):  # stdin and stdout: /dev/null; stderr: the pipe
                    os.dup2(fd, target)
                os.close(null)
                os.close(fds[0])
                return request
            for fd in fds:
                os.close(fd)
            reply = {"pid": pid}
        elif request["op"] == "wait":
            reply = {"status": os.waitstatus_to_exitcode(os.waitpid(request["pid"], 0)[1])}  # negative: a signal
        else:  # poll
            pid, wait_status = os.waitpid(request["pid"], os.WNOHANG)
            reply = {"status": os.waitstatus_to_exitcode(wait_status) if pid else None}
        connection.sendall(json.dumps(reply).encode())


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the scripts set it before torch loads
    import matplotlib

    matplotlib.use("Agg")  # as experiment/plots.py selects it
    import matplotlib.pyplot  # noqa: F401, E402  (the imports every child then shares)
    import torch  # noqa: F401, E402
    import torch._dynamo  # noqa: F401, E402  (loaded by torch's optimizers on first use)

    run = _serve(socket.socket(fileno=int(sys.argv[1])))
    if run is None:
        sys.exit(0)
    # The child: from here on, what `python <script> <args>` does, with this run's settings.
    import resource
    import runpy

    os.environ.update(run["env"])
    os.chdir(REPO)
    if run["file_size_limit"] is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (run["file_size_limit"], run["file_size_limit"]))
    sys.argv = [run["script"], *run["args"]]
    if not sys.flags.safe_path:  # as `python <script>` puts the script's folder first (not under -P)
        sys.path[0] = str(Path(run["script"]).parent)
    del run
    runpy.run_path(sys.argv[0], run_name="__main__")
