"""The layers point one way: lora needs torch alone, minigpt never imports lora or the experiment."""

import ast

import pytest

from conftest import REPO


def imported_top_level_packages(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in sorted((REPO / folder).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
        found[path.name] = names
    return found


PROJECT_PACKAGES = {"lora", "minigpt", "experiment", "coursework"}


@pytest.mark.parametrize("folder, allowed_project_packages", [("lora", {"lora"}), ("minigpt", {"minigpt"})])
def test_library_packages_import_no_layer_above_them(folder, allowed_project_packages):
    for file, names in imported_top_level_packages(folder).items():
        forbidden = (names & PROJECT_PACKAGES) - allowed_project_packages
        assert not forbidden, f"{folder}/{file} imports {forbidden}"


def test_lora_needs_torch_and_the_standard_library_alone():
    third_party = {"numpy", "matplotlib", "tqdm", "scipy"}
    for file, names in imported_top_level_packages("lora").items():
        assert not names & third_party, f"lora/{file} imports {names & third_party}"
