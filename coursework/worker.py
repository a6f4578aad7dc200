"""The grading child process: runs the rubric checks on one repository copy after another.

Started by runner.py as `python -I -c BOOTSTRAP GRADER_ROOT`. It reads jobs,
one JSON line each, {"path": ..., "skip": k}, from stdin; for each it makes
`lora` (and `minigpt`) importable from that path alone, runs the checks from
the (k+1)-th on, and writes JSON events on its own protocol channel:
{"event": "start", "id": ...}, {"event": "result", "id", "passed", "message"},
{"event": "done"}. A check that never ends or kills the process is the
runner's business: it sees a "start" without a "result" and restarts us.

Student code may print: fd 1 is pointed at stderr so its output can never
corrupt the protocol, which keeps a private duplicate of the real stdout.
"""

import importlib
import json
import os
import sys
import warnings

from coursework import checks_layer, checks_model
from coursework.probes import Fail
from coursework.rubric import RUBRIC

STUDENT_PACKAGES = ("lora", "minigpt")


def check_function(line_id: str):
    for module in (checks_layer, checks_model):
        function = getattr(module, f"check_{line_id}", None)
        if function is not None:
            return function
    raise LookupError(f"no check for rubric line {line_id}")


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, short enough for a scorecard."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def use_student_code(path: str, base_path: list[str]) -> None:
    """Forget the previously graded copy's modules; make `path` the first place imports look."""
    for name in list(sys.modules):
        if name.split(".")[0] in STUDENT_PACKAGES:
            del sys.modules[name]
    sys.path[:] = [path] + base_path
    importlib.invalidate_caches()


def run_check(line_id: str) -> tuple[bool, str]:
    import torch

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)  # undo what a previously graded copy may have changed
    torch.set_grad_enabled(True)
    try:
        check_function(line_id)()
        return True, ""
    except Fail as failure:
        return False, str(failure)
    except BaseException as error:  # student code may raise anything, SystemExit included
        if isinstance(error, KeyboardInterrupt):
            raise
        return False, f"your code raised {one_line(error)}"


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)  # tiny tensors: threads only cost start-up time on a shared machine

    def send(**event) -> None:
        protocol.write(json.dumps(event) + "\n")

    send(event="ready")
    base_path = list(sys.path)
    for line in sys.stdin:
        job = json.loads(line)
        use_student_code(job["path"], base_path)
        try:
            import lora

            send(event="graded", file=getattr(lora, "__file__", None) or str(list(lora.__path__)))
        except BaseException as error:  # the package itself may fail to import; each check then says so
            send(event="graded", file=None, error=one_line(error))
        for rubric_line in RUBRIC[job["skip"]:]:
            send(event="start", id=rubric_line.id)
            passed, message = run_check(rubric_line.id)
            send(event="result", id=rubric_line.id, passed=passed, message=message)
        send(event="done")
