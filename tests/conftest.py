"""Shared test helpers: tiny models, tiny corpora, and running a script's main() in-process.

Scripts are run in-process (same code path as the command line, through
run_cli) because starting a fresh Python that imports torch and matplotlib
costs seconds; a few tests still run real subprocesses to prove the exit
status and the absence of a traceback end to end.
"""

import contextlib
import fcntl
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

# One torch thread, here and in every script a test starts: on a machine shared with other busy processes,
# torch's default of one thread per core made the suite up to ten times slower (see docs/own_text_and_machine.md, --threads).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# torch and the project are imported inside the helpers below, not here: under pytest-xdist this file is
# also loaded by the controlling process, which runs no test, before it starts the workers.

DATA = REPO / "data"
FINETUNE_DATA_FLAGS = ["--data", DATA / "cooking.txt", "--probes", DATA / "cooking_probes.json",
                       "--pretrain-corpus", DATA / "pretrain.txt", "--pretrain-probes", DATA / "pretrain_probes.json"]
TINY = dict(block_size=16, n_layer=2, n_head=2, n_embd=16)
TINY_FLAGS = ["--block-size", "16", "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--no-progress"]


def tiny_model(vocab_size: int = 50, seed: int = 0, **overrides) -> "MiniGPT":
    import torch
    from minigpt.config import GPTConfig
    from minigpt.model import MiniGPT

    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=vocab_size, **{**TINY, **overrides})).eval()


def run_main(script: str, args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run scripts/<script>.py's main() as the command line would; return (exit status, stdout, stderr)."""
    from experiment.training.methods import USER_ERRORS
    from minigpt.plumbing.errors import run_cli

    module = __import__(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, args)])
    status, sigint = 0, signal.getsignal(signal.SIGINT)
    try:
        run_cli(module.main, USER_ERRORS)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        signal.signal(signal.SIGINT, sigint)  # run_cli ignores Ctrl-C once main() ends; this process goes on
    out = capsys.readouterr()
    return status, out.out, out.err


def run_subprocess(script: str, args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / f"{script}.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert status == 2, f"expected exit status 2, got {status}: {err}"
    assert len(lines) == 1, f"expected one line on stderr, got: {err}"
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def run_in_process(script: str, args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run a script's main() in this process from `cwd`, as `python <script>.py args` would; return (status, out, err)."""
    from experiment.training.methods import USER_ERRORS
    from minigpt.plumbing.errors import run_cli

    module = __import__(script)
    saved_argv, saved_cwd, sigint = sys.argv, os.getcwd(), signal.getsignal(signal.SIGINT)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    try:
        sys.argv = [f"{script}.py", *map(str, args)]
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_cli(module.main, USER_ERRORS)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        signal.signal(signal.SIGINT, sigint)  # run_cli ignores Ctrl-C once main() ends; this process goes on
    return status, out.getvalue(), err.getvalue()


# The test files that take longest on the course machine (`python -m pytest --durations=0`), run first so
# the two workers finish together. The first file builds the shared pipeline at once, while the other
# worker runs the next files, which do not use it, instead of waiting for it.
SLOW_FILES_FIRST = ["test_variants_finetuning.py", "test_notebook.py", "test_crash_safety.py",
                    "test_data_parallel.py", "test_coursework_attacks.py", "test_coursework_grader.py",
                    "test_experiments.py", "test_peft_methods_scripts.py", "test_generate_script.py"]


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: each file keeps its order


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: ignored when the suite runs in one process (-n 0)
def pytest_xdist_make_scheduler(config, log):
    """Send each test file whole to one of the workers pytest.ini starts, so its module fixtures are built
    once, and the coursework files together, so their sandboxed graders (tests/test_coursework_grader.py)
    start once. (pytest-xdist's own --dist loadgroup marks do not reach its scheduler under pytest 9.)"""
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerPerFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "coursework" if Path(path).name.startswith("test_coursework") else path

    config.option.loadscopereorder = False  # keep the order above, not xdist's largest-file-first
    return OneWorkerPerFile(config, log)


def build_pipeline(root: Path) -> dict:
    """The three scripts end to end on the shipped data with a tiny model, run from `root` (not the repository)."""
    pretrained, results = root / "pretrained", root / "results"
    for script, args in (
        ("train_pretrain", ["--corpus", DATA / "pretrain.txt", "--probes", DATA / "pretrain_probes.json", "--out", pretrained,
                            "--steps", "30", "--eval-interval", "10", *TINY_FLAGS]),
        ("train_finetune", ["--pretrained", pretrained, "--out", results, *FINETUNE_DATA_FLAGS, "--steps", "8",
                            "--eval-interval", "4", "--batch-size", "8", "--no-progress"]),
        ("train_finetune", ["--pretrained", pretrained, "--out", results, *FINETUNE_DATA_FLAGS, "--steps", "8",
                            "--eval-interval", "4", "--batch-size", "8", "--no-progress", "--method", "variants"]),
        ("compare", ["--pretrained", pretrained, "--results", results,  # no data flags: the corpora the results record
                     "--latency-tokens", "4", "--latency-repeats", "2", "--no-progress"]),
    ):
        status, out, err = run_in_process(script, args, cwd=root)  # another cwd: no reliance on relative default paths
        assert status == 0, f"{script} failed:\n{out}\n{err}"
        with open(root / f"{script}.log", "a", encoding="utf-8") as log:
            log.write(out)
    return {"root": root, "pretrained": pretrained, "results": results}


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """The pipeline's outputs, built once per test run and shared read-only by every test that uses them.

    The scripts run in this process, which has torch loaded already, to keep the suite
    fast: a fresh Python costs seconds of imports. Real processes are proven
    elsewhere (the one-line error tests, the kill -9 tests) and by CI, which runs
    the default pipeline as real commands. A failing step fails with its own output.
    Under pytest-xdist the first worker to need it builds it in the run's shared
    temporary folder while holding a lock; the other waits and reuses it. Tests
    that change the outputs work on a copy.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_pipeline(tmp_path_factory.mktemp("pipeline"))
    shared = tmp_path_factory.getbasetemp().parent  # one folder per run, common to all workers
    root, done = shared / "pipeline", shared / "pipeline.done"
    with open(shared / "pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the build fails
        if not done.exists():
            if root.exists():  # a build that failed on the other worker: start again
                shutil.rmtree(root)
            root.mkdir()
            build_pipeline(root)
            done.touch()
    return {"root": root, "pretrained": root / "pretrained", "results": root / "results"}
