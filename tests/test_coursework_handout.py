"""The handout builder: the starter replaces the solution, nothing in the handout gives an answer away
(no TODO's solution code, no results table, no model answers), and every failure is one line and exit 2
with the temporary copy removed."""

import fcntl
import re
import subprocess
import sys

import pytest

from conftest import REPO
from coursework import handout
from coursework.runner import grade_paths
from test_coursework_grader import shared_graders

# The formulas a TODO asks for, however the code around them names its tensors.
TODO_PATTERNS = (
    r"kaiming_uniform_\(self\.lora_A", r"normal_\(self\.lora_A", r"zeros_\(self\.lora_B",
    r"self\.scaling(\[\w+\])? \* \(self\.lora_B(\[\w+\])?\.weight @ self\.lora_A",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout") / "for_students"
    assert handout.main([str(out)]) == 0
    return out


def handout_files(built) -> dict:
    return {str(p.relative_to(built)): p for p in built.rglob("*") if p.is_file()}


def normalized(line: str) -> str:
    return " ".join(line.split("#")[0].split())


LORA_WORDS = ("lora_A", "lora_B", "scaling", "delta_weight", "merge", "build_lora_layer", "base.weight", "deepcopy")


def solution_todo_lines() -> set:
    """Lines of the solution's layer.py, apply.py and merge.py that the starter lacks and that speak of LoRA:
    the TODOs' answers. (Generic PyTorch idioms such as a requires_grad_(False) loop are everyone's, not answers.)"""
    lines = set()
    for name in handout.STARTER_FILES:
        starter = {normalized(line) for line in (handout.STARTER / name).read_text(encoding="utf-8").splitlines()}
        solution = {normalized(line) for line in (REPO / name).read_text(encoding="utf-8").splitlines()}
        lines |= {line for line in solution - starter if len(line) >= 24 and any(word in line for word in LORA_WORDS)
                  and not re.fullmatch(r"for parameter in \w+\.parameters\(\):", line)}
    return lines


def test_the_starter_replaces_the_solution(built):
    for name in handout.STARTER_FILES:
        assert (built / name).read_bytes() == (handout.STARTER / name).read_bytes()
    assert (built / "STUDENT_README.md").is_file()
    assert (built / "coursework" / "ASSIGNMENT.md").is_file() and (built / "coursework" / "grade.py").is_file()


def test_instructor_only_files_are_left_out(built):
    files = set(handout_files(built))
    for name in ("tests/test_lora_layer.py", "tests/test_merge.py", "tests/test_apply_lora.py", "tests/test_nf4.py",
                 "coursework/INSTRUCTORS.md", "experiments.py"):
        assert name not in files
    assert not [f for f in files if f.startswith(("coursework/gallery", "coursework/starter", "tests/test_coursework_",
                                                  "docs/", "experiment/studies/"))]
    assert not [f for f in files if ".venv" in f or "__pycache__" in f or f.startswith(".git/")]
    assert not list(built.parent.glob(".for_students.*"))  # no staging directory or lock left behind


def test_no_file_in_the_handout_holds_a_todos_solution_code(built):
    forbidden = solution_todo_lines()
    assert len(forbidden) >= 10  # the search below is real: the solution's answers, line by line
    solution_hits = [p for p in TODO_PATTERNS if re.search(p, (REPO / "lora" / "multi_adapter.py").read_text(encoding="utf-8"))]
    assert solution_hits, "the patterns no longer match the repository's multi_adapter.py: update them"
    for name, path in handout_files(built).items():
        if not name.endswith(".py") or name in handout.STARTER_FILES:
            continue
        text = path.read_text(encoding="utf-8")
        leaked = {normalized(line) for line in text.splitlines()} & forbidden
        assert not leaked, f"{name} holds TODO solution code: {sorted(leaked)[:3]}"
        for pattern in TODO_PATTERNS:
            assert not re.search(pattern, text), f"{name} holds a TODO's formula ({pattern})"


def test_no_results_table_and_no_model_answers_in_the_handout(built):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    kept = handout.student_readme_md(readme)
    results_rows = {line.strip() for line in readme.splitlines() if line.startswith("|") and line not in kept}
    for chapter in (REPO / "docs").glob("*.md") if (REPO / "docs").is_dir() else ():
        results_rows |= {line.strip() for line in chapter.read_text(encoding="utf-8").splitlines() if line.startswith("|")}
    results_rows = {row for row in results_rows if re.search(r"\d", row)}
    assert results_rows, "the README has no results table to look for: update this test"
    answers = (REPO / "coursework" / "INSTRUCTORS.md").read_text(encoding="utf-8")
    model_answers = answers[answers.index("## Model answers"):]
    for name, path in handout_files(built).items():
        if not name.endswith((".md", ".py", ".txt", ".json")):
            continue
        text = path.read_text(encoding="utf-8")
        assert not results_rows & {line.strip() for line in text.splitlines()}, f"{name} holds a results table row"
        assert "## Model answers" not in text and model_answers[:400] not in text, name
    headings = [line for line in (built / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert not [h for h in headings if "result" in h.lower()], headings


def test_the_student_readme_says_to_run_the_tests_with_one_thread_on_shared_machines(built):
    text = (built / "STUDENT_README.md").read_text(encoding="utf-8")
    assert "python -m pytest -q tests/" in text and "--threads 1" in text


def test_the_handouts_lora_imports_and_is_the_starter(built):
    report = grade_paths([built], graders=shared_graders(), timeout=3.0, only=[["shapes"]])[0]
    line = report["lines"][0]
    assert line["message"].startswith("your code raised NotImplementedError: not implemented yet: LoRALinear.__init__"), line


def refused(capsys, argv) -> str:
    assert handout.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("handout: "), err
    return err[0]


@pytest.mark.parametrize("where", ["non_empty", "inside_repo", "proc"])
def test_bad_output_directories_are_refused_with_one_line(tmp_path, capsys, where):
    if where == "non_empty":
        out = tmp_path / "taken"
        out.mkdir()
        (out / "file").write_text("x")
    elif where == "inside_repo":
        out = REPO / "coursework" / "not_here"
    else:
        out = "/proc/handout"
    refused(capsys, [str(out)])
    assert not (REPO / "coursework" / "not_here").exists()


def test_a_repo_that_holds_only_lora_is_refused_not_handed_out(tmp_path, capsys):
    (tmp_path / "repo" / "lora").mkdir(parents=True)
    (tmp_path / "repo" / "lora" / "__init__.py").write_text("")
    line = refused(capsys, [str(tmp_path / "out"), "--repo", str(tmp_path / "repo")])
    assert "not a whole copy of the repository" in line and "README.md" in line
    assert not (tmp_path / "out").exists()


def test_a_file_on_the_output_path_is_named_not_called_missing(tmp_path, capsys):
    (tmp_path / "notes").write_text("x")
    assert "notes is a file" in refused(capsys, [str(tmp_path / "notes" / "sub" / "handout")])


def test_a_second_build_into_the_same_place_is_refused(tmp_path, capsys):
    out = tmp_path / "handout"
    with open(tmp_path / ".handout.lock", "a") as lock:  # what a build in progress holds
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert "another handout build" in refused(capsys, [str(out)])
    assert not out.exists()


def test_ctrl_c_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    def interrupted(repo, staging):
        (staging / "half.txt").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(handout, "build", interrupted)
    assert handout.main([str(tmp_path / "out")]) == 130  # 128 + SIGINT, as for every script
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("handout: interrupted"), err
    assert list(tmp_path.iterdir()) == []  # no staging directory, no lock file


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path):
    # A file-size limit makes the copy fail as a full disk would (EFBIG instead of ENOSPC).
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
            f"sys.path.insert(0, {str(REPO)!r}); from coursework.handout import main; sys.exit(main([{str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("handout: could not write"), lines
    assert list(tmp_path.iterdir()) == []


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        handout.main(["--help"])
    assert "(default: " in capsys.readouterr().out
