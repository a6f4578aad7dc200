"""The autograder against known answers: the solution scores 100, the starter 0, and every
wrong implementation in the gallery fails, on its own, the rubric line whose hint names its mistake.

All copies are graded in one batch on two sandboxed workers. The reference and
the starter get every line; each wrong implementation gets only the line that
must catch it (so the file stays fast), plus the next line for the hang and the
crash, to show that grading goes on after them.
"""

import atexit
import shutil

import pytest

from conftest import REPO
from coursework.gallery.mutations import COPIED, MUTATIONS, build_wrong_copy
from coursework.handout import STARTER, STARTER_FILES
from coursework.rubric import MAX_SCORE, RUBRIC
from coursework.runner import Grader, grade_paths, namespaces_available

TIMEOUT = 3.0  # seconds per check in these tests; a correct check takes well under one
IDS = [line.id for line in RUBRIC]
SLOW = {"unmerge_loops_forever", "unmerge_kills_the_process"}  # a timeout, a crash: their line and the next


_GRADERS: list = []


def shared_graders() -> list:
    """Two graders (each a started sandboxed worker) shared by the coursework test files: torch starts twice, not per file."""
    if not _GRADERS:
        isolate = namespaces_available()
        _GRADERS.extend(Grader(TIMEOUT, isolate) for _ in range(2))
        atexit.register(lambda: [grader.close() for grader in _GRADERS])
    return _GRADERS


def solution_copy(destination):
    for package in COPIED:
        shutil.copytree(REPO / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def starter_copy(destination):
    solution_copy(destination)
    for name in STARTER_FILES:
        shutil.copy2(STARTER / name, destination / name)
    return destination


def lines_for(name):
    line = MUTATIONS[name].line
    return [line, IDS[IDS.index(line) + 1]] if name in SLOW else [line]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("graded")
    paths = {"reference": solution_copy(root / "reference"), "starter": starter_copy(root / "starter")}
    ordered = sorted(SLOW) + sorted(set(MUTATIONS) - SLOW)  # the slow ones first, one per worker, so the rest overlaps them
    paths.update({name: build_wrong_copy(REPO, root / name, name) for name in ordered})
    only = [None, None] + [lines_for(name) for name in ordered]
    graded = grade_paths(list(paths.values()), timeout=TIMEOUT, only=only, graders=shared_graders())
    return dict(zip(paths, graded))


def by_id(report):
    return {line["id"]: line for line in report["lines"]}


def test_the_reference_solution_scores_full_marks(reports):
    report = reports["reference"]
    assert report["score"] == MAX_SCORE, [line for line in report["lines"] if not line["passed"]]
    assert report["lora"].startswith(report["path"]) and not report["tampered"]


def test_the_untouched_starter_scores_zero_with_one_line_messages(reports):
    report = reports["starter"]
    assert report["score"] == 0
    for line in report["lines"]:
        assert "\n" not in line["message"] and "Traceback" not in line["message"]
        assert "NotImplementedError: not implemented yet:" in line["message"], line


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_wrong_implementation_fails_the_line_that_names_its_mistake(reports, name):
    mutation = MUTATIONS[name]
    line = by_id(reports[name])[mutation.line]
    assert not line["passed"] and line["points"] == 0, f"{name} ({mutation.mistake}) passed {line['id']}"
    assert line["message"] and "\n" not in line["message"]
    assert mutation.hint in line["message"], (name, line["message"])


@pytest.mark.parametrize("line_id", IDS)
def test_every_rubric_line_has_a_wrong_implementation_that_only_it_catches(line_id):
    assert any(mutation.line == line_id for mutation in MUTATIONS.values()), f"no gallery case for {line_id}"


def test_an_infinite_loop_costs_only_its_own_check(reports):
    lines = by_id(reports["unmerge_loops_forever"])
    assert "did not finish within" in lines["unmerge_restores"]["message"]
    assert lines[lines_for("unmerge_loops_forever")[1]]["passed"]  # the next check ran, in a fresh child


def test_a_crash_costs_only_its_own_check_and_student_prints_do_not_disturb(reports):
    lines = by_id(reports["unmerge_kills_the_process"])
    assert "the grading process died (exit status 3)" in lines["unmerge_restores"]["message"]
    assert lines[lines_for("unmerge_kills_the_process")[1]]["passed"]
