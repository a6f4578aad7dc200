"""The layers point one way: lora needs torch alone, minigpt never imports lora or the experiment."""

import ast

import pytest

from conftest import REPO


def imported_top_level_packages(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO / folder))] = names
    return found


PROJECT_PACKAGES = {"lora", "minigpt", "experiment", "coursework", "peft_methods"}


@pytest.mark.parametrize("folder, allowed_project_packages", [("lora", {"lora"}), ("minigpt", {"minigpt"})])
def test_library_packages_import_no_layer_above_them(folder, allowed_project_packages):
    for file, names in imported_top_level_packages(folder).items():
        forbidden = (names & PROJECT_PACKAGES) - allowed_project_packages
        assert not forbidden, f"{folder}/{file} imports {forbidden}"


def test_lora_needs_torch_and_the_standard_library_alone():
    third_party = {"numpy", "matplotlib", "tqdm", "scipy"}
    for file, names in imported_top_level_packages("lora").items():
        assert not names & third_party, f"lora/{file} imports {names & third_party}"


def test_the_experiment_imports_only_the_libraries_below_it():
    for file, names in imported_top_level_packages("experiment").items():
        forbidden = names & (PROJECT_PACKAGES - {"lora", "minigpt", "experiment", "peft_methods"})
        assert not forbidden, f"experiment/{file} imports {forbidden}"


def experiment_parts_imported(file: str) -> set[str]:
    """The sub-packages of experiment/ that one of its files imports (experiment.training.x -> training)."""
    parts = set()
    for node in ast.walk(ast.parse((REPO / "experiment" / file).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("experiment."):
            parts.add(node.module.split(".")[1])
    return parts


def test_inside_the_experiment_training_is_the_bottom_layer_and_the_others_never_import_each_other():
    upper = {"comparison", "studies", "serving", "real_model"}
    for path in sorted((REPO / "experiment").rglob("*.py")):
        file = str(path.relative_to(REPO / "experiment"))
        own = file.split("/")[0] if "/" in file else None
        imported = experiment_parts_imported(file) - {own}
        if own in (None, "training"):
            assert not imported & upper, f"experiment/{file} imports the layer above it: {imported & upper}"
        else:
            assert not imported & upper, f"experiment/{file} imports another upper part: {imported & upper}"


def test_the_real_model_part_builds_on_training_the_shared_plots_and_lora_alone():
    for path in sorted((REPO / "experiment" / "real_model").rglob("*.py")):
        imported = experiment_parts_imported(str(path.relative_to(REPO / "experiment")))
        assert imported <= {"training", "real_model", "plots"}, f"{path.name} imports {imported - {'training', 'real_model', 'plots'}}"


def test_only_the_real_model_part_imports_transformers_and_only_inside_functions():
    for folder in ("lora", "minigpt", "experiment"):
        for file, names in imported_top_level_packages(folder).items():
            if "transformers" in names or "peft" in names:
                assert file.startswith("real_model/"), f"{folder}/{file} imports transformers or peft"
    for path in sorted((REPO / "experiment" / "real_model").glob("*.py")):
        top_level = ast.parse(path.read_text(encoding="utf-8")).body  # module-level statements only
        names = {alias.name.split(".")[0] for node in top_level if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
        assert not names & {"transformers", "safetensors", "peft", "huggingface_hub"}, f"{path.name} imports them at load time"


def test_each_experiment_folder_holds_at_most_eight_modules_and_says_what_it_holds():
    folders = [REPO / "experiment"] + [p for p in (REPO / "experiment").rglob("*") if p.is_dir() and p.name != "__pycache__"]
    for folder in folders:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 8, f"{folder.name}/ holds {len(modules)} modules"
        docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))) or ""
        for module in modules:
            assert module.name in docstring, f"{folder.name}/__init__.py does not list {module.name} in its reading order"


def test_peft_methods_needs_torch_and_itself_alone():
    for file, names in imported_top_level_packages("peft_methods").items():
        assert names <= {"peft_methods", "torch", "dataclasses", "math", "typing"}, f"peft_methods/{file} imports {names}"


def test_minigpt_never_imports_peft_methods():
    for file, names in imported_top_level_packages("minigpt").items():
        assert "peft_methods" not in names, f"minigpt/{file} imports peft_methods"
