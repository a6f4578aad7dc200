"""The README's quickstart is what CI runs, the code map in docs/ names every Python file, and the README
and its chapters link each other, so none of them can drift from the repository."""

import re

from conftest import REPO


def quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- quickstart -->\s*```bash\n(.*?)```", readme, re.S)
    assert block, "README.md needs a ```bash block right after <!-- quickstart -->"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_quickstart_is_two_lines_install_and_run_then_test():
    install, test = quickstart_commands()
    assert "pip install -r requirements.txt" in install
    for script in ("train_pretrain.py", "train_finetune.py", "compare.py"):
        assert f"python {script}" in install
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_quickstart_lines():
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    for command in quickstart_commands():
        assert command in ci_lines, f"{command!r} is in the README quickstart but not in .ci/run"


def test_requirements_pin_the_cpu_torch_build():
    requirements = (REPO / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", requirements, re.M)
    for package in ("matplotlib", "tqdm", "pytest"):
        assert re.search(rf"^{package}>=[\d.]+,<\d+$", requirements, re.M), package


def file_map_paths() -> set[str]:
    code_map = (REPO / "docs" / "code_map.md").read_text(encoding="utf-8")
    section = code_map[code_map.index("## Every file"):]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    first_words = [line.split()[0] for block in blocks for line in block.splitlines() if line.strip()]
    return {word for word in first_words if word.endswith(".py")}


def test_the_code_map_lists_every_python_file_and_nothing_that_is_gone():
    listed = file_map_paths()
    actual = ({str(p.relative_to(REPO)) for p in (REPO / "experiment").rglob("*.py")}
              | {str(p.relative_to(REPO)) for folder in ("lora", "minigpt", "minigpt/plumbing", "peft_methods", "tests", "coursework", "coursework/gallery")
                 for p in (REPO / folder).glob("*.py")}
              | {str(p.relative_to(REPO)) for folder in ("notebooks", "tools", "tests/fixtures") for p in (REPO / folder).glob("*.py")}
              | {p.name for p in REPO.glob("*.py")})
    actual = {path for path in actual if not path.endswith("__init__.py")}
    assert actual - listed == set(), "files missing from docs/code_map.md"
    assert listed - actual - {"data/make_corpora.py"} == set(), "docs/code_map.md names files that do not exist"


CHAPTERS = sorted(p.name for p in (REPO / "docs").glob("*.md"))


def test_the_readme_links_every_chapter_and_every_chapter_links_back():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for chapter in CHAPTERS:
        assert f"](docs/{chapter}" in readme, f"README.md does not link docs/{chapter}"
        assert "](../README.md)" in (REPO / "docs" / chapter).read_text(encoding="utf-8"), f"docs/{chapter} does not link back"


def test_the_readme_stays_a_short_learning_path():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 350, "README.md is the front door; move details into a chapter under docs/"
    for heading in ("The idea", "Worked example", "Glossary", "Where to go next"):
        assert heading in readme, heading
