"""The autograder against known answers: the solution scores 100, the starter 0, and every
wrong implementation in the gallery loses the points of the rubric line that names its mistake.

All copies are graded in one batch (two worker processes), so the whole file
costs a few seconds; the gallery's infinite loop costs one per-check timeout
and, like its crash, one worker restart.
"""

import json
import shutil

import pytest

from conftest import REPO
from coursework import grade
from coursework.gallery.mutations import COPIED, MUTATIONS, build_wrong_copy
from coursework.handout import STARTER, STARTER_FILES
from coursework.rubric import MAX_SCORE, RUBRIC
from coursework.runner import grade_paths

TIMEOUT = 3.0  # seconds per check in these tests; a correct check takes under 0.1 s


def solution_copy(destination):
    for package in COPIED:
        shutil.copytree(REPO / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def starter_copy(destination):
    solution_copy(destination)
    for name in STARTER_FILES:
        shutil.copy2(STARTER / name, destination / name)
    return destination


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("graded")
    paths = {"reference": solution_copy(root / "reference"), "starter": starter_copy(root / "starter")}
    # The two that cost a worker restart go first, one to each worker, so the rest overlaps them.
    slow = ["unmerge_loops_forever", "unmerge_kills_the_process"]
    slow_first = slow + [name for name in MUTATIONS if name not in slow]
    paths.update({name: build_wrong_copy(REPO, root / name, name) for name in slow_first})
    graded = grade_paths(list(paths.values()), timeout=TIMEOUT, workers=2)
    return dict(zip(paths, graded))


def by_id(report):
    return {line["id"]: line for line in report["lines"]}


def test_the_reference_solution_scores_full_marks(reports):
    report = reports["reference"]
    assert report["score"] == MAX_SCORE, [line for line in report["lines"] if not line["passed"]]
    assert report["lora"].startswith(report["path"])  # the copy's lora, not the grader's own


def test_the_untouched_starter_scores_zero_with_one_line_messages(reports):
    report = reports["starter"]
    assert report["score"] == 0
    for line in report["lines"]:
        assert "\n" not in line["message"] and "Traceback" not in line["message"]
        assert "NotImplementedError: not implemented yet:" in line["message"], line


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_wrong_implementation_fails_the_line_that_names_its_mistake(reports, name):
    line = by_id(reports[name])[MUTATIONS[name].line]
    assert not line["passed"] and line["points"] == 0, f"{name} ({MUTATIONS[name].mistake}) passed {line['id']}"
    assert line["message"] and "\n" not in line["message"]
    assert reports[name]["score"] < MAX_SCORE


def test_an_infinite_loop_costs_only_its_own_check(reports):
    lines = by_id(reports["unmerge_loops_forever"])
    assert "did not finish within" in lines["unmerge_restores"]["message"]
    after = [line.id for line in RUBRIC][[line.id for line in RUBRIC].index("unmerge_restores") + 1:]
    assert all(lines[line_id]["passed"] for line_id in after)  # the worker restarted and went on


def test_a_crash_costs_only_its_own_check_and_student_prints_do_not_disturb(reports):
    lines = by_id(reports["unmerge_kills_the_process"])
    assert "the grading process died (exit status 3)" in lines["unmerge_restores"]["message"]
    assert [line_id for line_id, line in lines.items() if not line["passed"]] == ["unmerge_restores"]


def test_the_command_line_prints_a_scorecard_and_writes_grade_json(tmp_path, capsys):
    path = starter_copy(tmp_path / "copy")
    assert grade.main([str(path), "--timeout", str(TIMEOUT)]) == 0
    out = capsys.readouterr().out
    assert "total: 0/100" in out and out.count("FAIL") == len(RUBRIC)
    assert json.loads((path / "grade.json").read_text())["score"] == 0


@pytest.mark.parametrize("make", [lambda tmp: tmp / "missing", lambda tmp: tmp])
def test_bad_usage_is_one_line_and_exit_status_2(tmp_path, capsys, make):
    assert grade.main([str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grade: ")
