"""`python -m coursework.grade`: one copy or a folder of submissions into one CSV; every bad argument,
unwritable output, concurrent run or Ctrl-C is one line and exit status 2, with no worker or copy left."""

import csv
import fcntl
import functools
import json
import os
import shutil
import signal
import threading
import time

import pytest

from coursework import grade, runner
from coursework.rubric import RUBRIC
from test_coursework_grader import TIMEOUT, shared_graders, starter_copy


@pytest.fixture
def shared(monkeypatch):
    """The CLI's grading on the already started shared workers (the CLI itself is what is tested here)."""
    monkeypatch.setattr(grade, "grade_paths", functools.partial(runner.grade_paths, graders=shared_graders()[:1]))


def one_error_line(capsys, argv) -> str:
    assert grade.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e9", "soon"])
def test_a_timeout_that_is_not_a_positive_finite_number_is_one_line(tmp_path, capsys, value):
    assert "--timeout" in one_error_line(capsys, [str(tmp_path), "--timeout", value])


@pytest.mark.parametrize("problem", ["missing", "no_lora", "no_submissions"])
def test_a_missing_folder_is_one_line(tmp_path, capsys, problem):
    argv = {"missing": [str(tmp_path / "missing")], "no_lora": [str(tmp_path)],
            "no_submissions": ["--submissions", str(tmp_path / "missing")]}[problem]
    one_error_line(capsys, argv)


def test_an_output_under_proc_is_one_line(tmp_path, capsys, shared):
    path = starter_copy(tmp_path / "copy")
    assert "cannot write" in one_error_line(capsys, [str(path), "--out", "/proc/grade.json"])


@pytest.mark.parametrize("error", [(28, "No space left on device"), (30, "Read-only file system")])
def test_a_full_disk_or_read_only_output_is_one_line(tmp_path, capsys, monkeypatch, error):
    def failing(path, text):
        raise OSError(*error)

    monkeypatch.setattr(grade, "atomic_write_text", failing)
    monkeypatch.setattr(grade, "grade_paths", lambda paths, **kwargs: [runner.report(paths[0], {}, "none", [])])
    path = starter_copy(tmp_path / "copy")
    assert error[1] in one_error_line(capsys, [str(path), "--timeout", str(TIMEOUT)])
    assert sorted(p.name for p in path.iterdir()) == ["lora", "minigpt"]  # no lock, no half-written report


def test_out_with_submissions_or_csv_without_them_is_refused_not_ignored(tmp_path, capsys):
    (tmp_path / "submissions" / "alice").mkdir(parents=True)
    line = one_error_line(capsys, ["--submissions", str(tmp_path / "submissions"), "--out", str(tmp_path / "g.json")])
    assert "--csv" in line
    path = starter_copy(tmp_path / "copy")
    for flags in (["--csv", str(tmp_path / "g.csv")], ["--workers", "2"]):
        assert "--submissions" in one_error_line(capsys, [str(path), *flags])


@pytest.mark.parametrize("flag", ["--out", "--csv"])
def test_an_output_that_is_a_directory_is_refused_before_grading_and_names_its_flag(tmp_path, capsys, monkeypatch, flag):
    monkeypatch.setattr(grade, "grade_paths", lambda *args, **kwargs: pytest.fail("graded before the output was checked"))
    path = starter_copy(tmp_path / "submissions" / "alice")
    target = [str(path)] if flag == "--out" else ["--submissions", str(tmp_path / "submissions")]
    line = one_error_line(capsys, [*target, flag, str(tmp_path)])
    assert "is a directory" in line and f"choose another {flag}" in line


def test_a_second_run_on_the_same_output_is_refused(tmp_path, capsys, shared):
    path = starter_copy(tmp_path / "copy")
    with open(path / ".grade.json.lock", "a") as lock:  # what a run in progress holds
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert "another grading run" in one_error_line(capsys, [str(path)])
    assert not (path / "grade.json").exists()


def test_one_copy_prints_a_scorecard_and_writes_grade_json(tmp_path, capsys, shared):
    path = starter_copy(tmp_path / "copy")
    assert grade.main([str(path), "--timeout", str(TIMEOUT)]) == 0
    out = capsys.readouterr().out
    assert "total: 0/100" in out and out.count("FAIL") == len(RUBRIC)
    assert json.loads((path / "grade.json").read_text())["score"] == 0
    assert sorted(p.name for p in path.iterdir()) == ["grade.json", "lora", "minigpt"]  # no lock or temporary left


def test_a_folder_of_submissions_gives_one_csv_row_per_student_and_a_column_per_rubric_line(tmp_path, capsys, shared):
    submissions = tmp_path / "submissions"
    starter_copy(submissions / "alice")
    (submissions / "bob").mkdir()  # handed in nothing: still a row, with every line failed
    assert grade.main(["--submissions", str(submissions), "--timeout", str(TIMEOUT)]) == 0
    rows = list(csv.DictReader((submissions / "grades.csv").open()))
    assert [row["student"] for row in rows] == ["alice", "bob"]
    assert list(rows[0])[:3 + len(RUBRIC)] == ["student", "score", "max_score", *(line.id for line in RUBRIC)]
    assert all(row["score"] == "0" and "NotImplementedError" in row["failed_lines"] for row in rows[:1])
    assert "could not copy the submission's lora/" in rows[1]["failed_lines"]
    assert "wrote" in capsys.readouterr().out


def test_ctrl_c_is_one_line_and_exit_status_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(grade, "grade_paths", interrupted)
    path = starter_copy(tmp_path / "copy")
    assert grade.main([str(path)]) == 130  # 128 + SIGINT, as for every script; 2 is for a user's mistake
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "nothing was written" in err[0], err
    assert not (path / "grade.json").exists() and not (path / ".grade.json.lock").exists()


def test_ctrl_c_after_the_report_is_written_says_it_was_kept(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(grade, "grade_paths", lambda paths, **kwargs: [runner.report(paths[0], {}, "none", [])])
    monkeypatch.setattr(grade, "format_scorecard", lambda report: (_ for _ in ()).throw(KeyboardInterrupt))
    path = starter_copy(tmp_path / "copy")
    assert grade.main([str(path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path / 'grade.json'} was written" in err[0], err
    assert (path / "grade.json").exists() and not (path / ".grade.json.lock").exists()


def test_ctrl_c_while_grading_stops_the_worker_and_removes_its_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))  # the graders' scratch folders go here
    grader = runner.Grader(TIMEOUT, runner.namespaces_available())
    copy = starter_copy(tmp_path / "copy")
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.grade_paths([copy] * 3, timeout=TIMEOUT, graders=[grader])
    finally:
        timer.cancel()
    assert grader.closed and grader.worker is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("coursework-grading-")]


def test_a_second_ctrl_c_while_grading_cleans_up_still_stops_every_worker_and_removes_every_copy(tmp_path):
    class Grader:  # stands in for runner.Grader: Ctrl-C arrives while it grades, and again while it is closed
        def __init__(self, scratch):
            self.scratch, self.closed, self.timeout = scratch, False, None
            scratch.mkdir()

        def grade(self, path, only):
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C, while grading
            deadline = time.monotonic() + 10
            while not self.closed and time.monotonic() < deadline:  # until close() (a real worker: killed)
                time.sleep(0.01)
            (self.scratch / "submission" / "lora").mkdir(parents=True)  # a copy under way re-creates the scratch folder
            raise RuntimeError("its worker was killed")  # what grading gives once close() has killed the worker

        def close(self):
            if not self.closed:
                self.closed = True
                os.kill(os.getpid(), signal.SIGINT)  # the second, while the cleanup closes the workers one by one
            shutil.rmtree(self.scratch, ignore_errors=True)

    graders = [Grader(tmp_path / "first"), Grader(tmp_path / "second")]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt, as in grade.py
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.grade_paths(["a", "b"], graders=graders)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
    finally:
        signal.signal(signal.SIGINT, previous)
    assert all(grader.closed for grader in graders), "the second Ctrl-C stopped the cleanup halfway"
    assert list(tmp_path.iterdir()) == [], "a scratch folder re-created by a copy under way was left behind"


def test_a_worker_that_starts_while_grading_stops_is_stopped_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    grader = runner.Grader(TIMEOUT, isolate=False)
    stopped = []

    class Starting:  # Ctrl-C's close() runs in the main thread while this worker's process starts, before it is registered
        isolation = "none"

        def __init__(self, scratch, isolate):
            grader.close()

        def handshake(self):  # would wait for the worker to import torch, long after the main thread has exited
            raise AssertionError("the handshake began after grading was stopped")

        def stop(self):
            stopped.append(True)

    monkeypatch.setattr(runner, "Worker", Starting)
    assert grader._check(runner.IDS[0], tmp_path, runner.Draw(1)) == (False, "not run: grading was stopped")
    assert stopped and grader.worker is None
