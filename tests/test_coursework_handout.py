"""The handout builder: the starter replaces the solution, instructor-only files stay out,
`import lora` works in the handout, and bad output directories are refused with one line."""

import subprocess
import sys

import pytest

from conftest import REPO
from coursework import handout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout") / "for_students"
    assert handout.main([str(out)]) == 0
    return out


def test_the_starter_replaces_the_solution(built):
    for name in handout.STARTER_FILES:
        assert (built / name).read_bytes() == (handout.STARTER / name).read_bytes()
    assert (built / "STUDENT_README.md").is_file()
    assert (built / "coursework" / "ASSIGNMENT.md").is_file() and (built / "coursework" / "grade.py").is_file()


def test_instructor_only_files_are_left_out(built):
    files = {str(p.relative_to(built)) for p in built.rglob("*") if p.is_file()}
    for name in ("tests/test_lora_layer.py", "tests/test_merge.py", "tests/test_apply_lora.py"):
        assert name not in files
    assert not [f for f in files if f.startswith(("coursework/gallery", "coursework/starter", "tests/test_coursework_"))]
    assert not [f for f in files if ".venv" in f or "__pycache__" in f or f.startswith(".git/")]
    assert not list(built.parent.glob(".for_students.*"))  # no staging directory left behind


def test_lora_imports_in_the_handout(built):
    result = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, '.'); import lora; print(lora.__file__)"],
                            cwd=built, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(built / "lora" / "__init__.py")


@pytest.mark.parametrize("where", ["non_empty", "inside_repo"])
def test_bad_output_directories_are_refused_with_one_line(tmp_path, capsys, where):
    if where == "non_empty":
        out = tmp_path / "taken"
        out.mkdir()
        (out / "file").write_text("x")
    else:
        out = REPO / "coursework" / "not_here"
    assert handout.main([str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("handout: ")
    assert not (REPO / "coursework" / "not_here").exists()


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        handout.main(["--help"])
    assert "(default: " in capsys.readouterr().out
