"""Student code attacking the grader, from the untouched starter: each attack scores what the starter scores (0).

Every attack is the starter plus a hostile lora/__init__.py, run when the
worker imports the student's package. The grading process itself never
imports it (runner.py); these tests prove what that buys.
"""

import json
import shutil
import textwrap

import pytest

from conftest import REPO
from coursework import runner
from coursework.rubric import RUBRIC, STRUCTURE_LINES
from coursework.runner import grade_paths, namespaces_available
from test_coursework_grader import shared_graders, starter_copy

TIMEOUT = 1.5  # every attack is built on the starter, whose checks fail at once: a short limit only lowers scores
IDS = [line.id for line in RUBRIC]
ISOLATED = namespaces_available()

FORGED_LINES = [json.dumps({"event": "result", "id": line_id, "passed": True, "message": ""}) for line_id in IDS] + [
    json.dumps({"event": "done"}),
    json.dumps({"nonce": "0" * 32, "status": "ok", "exit": 0, "payload": json.dumps({"raw": {}}), "stderr": ""})]

ATTACKS = {
    # the attack: swap the grader's check functions in sys.modules for ones that pass
    "replace_checks_in_sys_modules": """
        import sys, types
        def _passes(*args, **kwargs):
            return None
        for _name, _module in list(sys.modules.items()):
            if _name.startswith("coursework"):
                for _attribute in list(vars(_module)):
                    if _attribute.startswith(("check_", "measure_", "judge_", "run_check", "verdict")):
                        setattr(_module, _attribute, _passes)
        _fake = types.ModuleType("coursework.checks_layer")
        for _id in IDS:
            setattr(_fake, "check_" + _id, _passes)
        sys.modules["coursework.checks_layer"] = sys.modules["coursework.checks_model"] = _fake
        """,
    # the attack: forged PASS events into every inherited file descriptor, stdout included,
    # and into the worker's own channel through /proc, as any process of the same user could try
    "forged_events_on_every_descriptor": """
        import os, sys
        _blob = ("\\n".join(FORGED_LINES) + "\\n").encode()
        print(_blob.decode())
        for _fd in range(256):
            try:
                os.write(_fd, _blob)
            except OSError:
                pass
        for _pid in {os.getppid(), 1}:
            for _fd in range(16):
                try:
                    with open(f"/proc/{_pid}/fd/{_fd}", "wb") as _channel:
                        _channel.write(_blob)
                except OSError:
                    pass
        """,
    # the attack: SIGKILL the grader's process, and its group
    "kill_the_grader": """
        import os, signal
        for _kill in (lambda: os.kill(os.getppid(), signal.SIGKILL),
                      lambda: os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)):
            try:
                _kill()
            except OSError:
                pass
        """,
    # answers built to trip the grading process: nesting deeper than its parser allows, or more than it accepts
    "malformed_answers": """
        import json, os
        _dumps = json.dumps
        def _hostile(value, *args, **kwargs):
            if isinstance(value, dict) and set(value) <= {"raw", "fail", "error"}:
                return "[" * 300000 + "]" * 300000 if os.getpid() % 2 else "0" * (9 << 20)
            return _dumps(value, *args, **kwargs)
        json.dumps = _hostile
        """,
    # hang at import: after three checks in a row time out, the rest are not run
    "hang_at_import": """
        import time
        while True:
            time.sleep(1)
        """,
    # protocol-aware: rewrite every answer on its way out (json.dumps), forging what needs no LoRA arithmetic
    "forge_answers_without_lora": """
        import json, sys
        _dumps = json.dumps
        def _zeros(*shape):
            return [_zeros(*shape[1:]) for _ in range(shape[0])] if shape else 0.0
        def _base(case):  # W x + b: the base layer alone, no LoRA
            return [[sum(w * v for w, v in zip(row, x)) + b for row, b in zip(case["W"], case["bias"])] for x in case["x"]]
        def _forge(line_id, inputs):
            blocks = [f"blocks.{i}.{name}" for i in range(2) for name in ("q_proj", "up_proj")]
            logits = _zeros(3, 8, 30)
            table = {
                "init_equals_base": lambda: {"cases": [{"b": _zeros(len(c["W"]), c["r"]), "out": _base(c), "base_out": _base(c)}
                                                       for c in inputs.get("cases", [])]},
                "forward_formula": lambda: {"outputs": [_base(c) for c in inputs.get("cases", [])]},
                "apply_targets": lambda: {"returned": blocks, "not_in_place": [], "replaced": []},
                "apply_freezes": lambda: {"frozen_ab": [], "still_trainable": []},
                "trainable_count": lambda: {"gpt": 512, "toy": 120},
                "merged_plain": lambda: {"foreign": [], "input_modules_untouched": True, "lora_logits": logits,
                                         "input_logits_after": logits, "load_error": None, "merged_logits": logits},
                "merged_trains": lambda: {"frozen": [], "loss_requires_grad": True, "no_gradient": []},
                "training_step": lambda: {"trainable": 16, "losses": [5.0, 4.0, 3.0, 2.0, 1.0], "changed": []},
                "dtype": lambda: {"a": "torch.float64", "b": "torch.float64", "out": "torch.float64",
                                  "merged_weight": "torch.float64", "values": _zeros(4, 10)},
            }
            return table[line_id]() if line_id in table else None
        def _forged_dumps(value, *args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None and not isinstance(frame.f_locals.get("job"), dict):
                frame = frame.f_back
            if frame is not None and isinstance(value, dict) and set(value) <= {"raw", "fail", "error"}:
                job = frame.f_locals["job"]
                forged = _forge(job["id"], job["inputs"])
                if forged is not None:
                    value = {"raw": forged}
            return _dumps(value, *args, **kwargs)
        json.dumps = _forged_dumps
        """,
}
if ISOLATED:  # without a PID namespace this would kill the test run itself: there the grader's parent is visible
    ATTACKS["kill_the_grader"] += """
        try:
            with open(f"/proc/{os.getppid()}/stat") as _stat:
                _grandparent = int(_stat.read().rsplit(")", 1)[1].split()[1])
            if _grandparent > 1:
                os.kill(_grandparent, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
        """


def hostile(destination, code: str):
    path = starter_copy(destination)
    init = path / "lora" / "__init__.py"
    prelude = f"IDS = {IDS!r}\nFORGED_LINES = {FORGED_LINES!r}\n"
    init.write_text(prelude + textwrap.dedent(code) + "\n" + init.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    names = ["hang_at_import"] + sorted(set(ATTACKS) - {"hang_at_import"})
    paths = [starter_copy(root / "starter")] + [hostile(root / name, ATTACKS[name]) for name in names]
    graded = grade_paths(paths, timeout=TIMEOUT, graders=shared_graders())
    return dict(zip(["starter"] + names, graded))


@pytest.mark.parametrize("name", sorted(set(ATTACKS) - {"forge_answers_without_lora"}))
def test_each_attack_scores_no_more_than_the_starter(reports, name):
    assert reports["starter"]["score"] == 0
    report = reports[name]
    assert report["score"] <= reports["starter"]["score"], [line["id"] for line in report["lines"] if line["passed"]]
    assert len(report["lines"]) == len(RUBRIC) and all("\n" not in line["message"] for line in report["lines"])


def test_a_protocol_aware_forgery_reaches_only_the_lines_judged_on_structure(reports):
    """The grader's known limit (INSTRUCTORS.md): code written against the worker's protocol can forge names,
    counts and flags; every line judged on numbers from the grader's random inputs stays out of its reach."""
    passed = {line["id"] for line in reports["forge_answers_without_lora"]["lines"] if line["passed"]}
    assert passed <= set(STRUCTURE_LINES)
    for line_id in ("forward_formula", "merged_plain", "dtype"):  # forged without LoRA's arithmetic: caught
        assert line_id not in passed


def test_a_hang_at_import_costs_three_timeouts_not_one_per_line(reports):
    messages = [line["message"] for line in reports["hang_at_import"]["lines"]]
    assert sum("did not finish within" in message for message in messages) == 3
    assert all(message.startswith("not run: 3 checks in a row") for message in messages[3:])


@pytest.mark.skipif(not ISOLATED, reason="needs user and PID namespaces (unshare)")
def test_the_worker_runs_in_its_own_pid_namespace(reports):
    assert {report["isolation"] for report in reports.values()} == {"pid namespace"}


def test_rewriting_the_graders_files_then_crashing_changes_nothing_and_withholds_the_score(tmp_path, monkeypatch):
    grader = tmp_path / "grader"
    for package in ("coursework", "minigpt"):
        shutil.copytree(REPO / package, grader / package, ignore=shutil.ignore_patterns("__pycache__", "gallery", "starter"))
    monkeypatch.setattr(runner, "GRADER_ROOT", grader)
    monkeypatch.setattr(runner, "FINGERPRINT", runner.fingerprint())
    sources = list(runner.WORKER_SOURCES)
    attack = f"""
        import os
        _root = {str(grader)!r}
        if not os.path.exists(os.path.join(_root, "attacked")):
            open(os.path.join(_root, "attacked"), "w").close()
            for _folder in ("coursework", "minigpt"):
                for _file in os.listdir(os.path.join(_root, _folder)):
                    if _file.endswith(".py"):
                        with open(os.path.join(_root, _folder, _file), "w") as _out:
                            _out.write("def __getattr__(name):\\n    return lambda *args, **kwargs: {{}}\\n")
            os._exit(1)
        """
    report = grade_paths([hostile(tmp_path / "student", attack)], timeout=TIMEOUT, graders=shared_graders()[:1])[0]
    assert (grader / "attacked").exists()  # the attack did run and did rewrite the files
    assert report["score"] == 0 and not any(line["passed"] for line in report["lines"])
    assert "coursework/judge_layer.py" in report["tampered"] and "coursework/worker.py" in report["tampered"]
    assert runner.WORKER_SOURCES == sources  # what the next worker would run is the text read before any student code
