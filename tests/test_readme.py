"""The README's quickstart is what CI runs, so the two cannot drift apart."""

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
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## 5. How the code is laid out"):readme.index("## 6.")]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    first_words = [line.split()[0] for block in blocks for line in block.splitlines() if line.strip()]
    return {word for word in first_words if word.endswith(".py")}


def test_the_readme_file_map_lists_every_python_file_and_nothing_that_is_gone():
    listed = {path for path in file_map_paths() if path.endswith(".py")}
    actual = {str(p.relative_to(REPO)) for folder in ("lora", "minigpt", "experiment", "experiment/training", "experiment/comparison", "experiment/studies", "experiment/serving", "experiment/real_model", "tests", "coursework", "coursework/gallery") for p in (REPO / folder).glob("*.py")
              if p.name != "__init__.py"} | {p.name for p in REPO.glob("*.py")}
    assert actual - listed == set(), "files missing from the README's file map"
    assert listed - actual - {"data/make_corpora.py"} == set(), "the README's file map names files that do not exist"
