"""The starter files keep the solution's public interface, so the two cannot drift apart.

Each starter module is loaded from its file under another name, beside the
solution module, and compared with inspect: the same top-level names (imports
included), the same signatures and docstrings, the same class members. The
starter's module docstring is the solution's plus a coursework note.
"""

import importlib.util
import inspect

import pytest

from conftest import REPO
from coursework.handout import STARTER, STARTER_FILES


def load_starter(name: str):
    spec = importlib.util.spec_from_file_location(f"starter_{name.replace('/', '_')[:-3]}", STARTER / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_solution(name: str):
    return importlib.import_module(name[:-3].replace("/", "."))


def top_level_names(module) -> set[str]:
    return {name for name in vars(module) if not name.startswith("__")}


def own_definitions(module) -> dict:
    """Functions and classes the module defines itself (not the ones it imports)."""
    return {name: obj for name, obj in vars(module).items()
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__}


def members(cls) -> dict:
    """The class's own methods and properties, by name."""
    return {name: obj for name, obj in vars(cls).items() if not name.startswith("__") or name == "__init__"}


def own_doc(obj):
    """The object's own docstring (inspect.getdoc would fall back to a base class's)."""
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else None


def describe(obj):
    """(kind, signature, own docstring) of a function, method or property."""
    if isinstance(obj, property):
        return "property", str(inspect.signature(obj.fget)), own_doc(obj.fget)
    return "function", str(inspect.signature(obj)), own_doc(obj)


@pytest.mark.parametrize("name", STARTER_FILES)
def test_starter_module_has_the_solutions_names_signatures_and_docstrings(name):
    starter, solution = load_starter(name), load_solution(name)
    assert top_level_names(starter) == top_level_names(solution)
    assert starter.__doc__.startswith(solution.__doc__.rstrip("\n")), "module docstring drifted"
    starter_defs, solution_defs = own_definitions(starter), own_definitions(solution)
    assert set(starter_defs) == set(solution_defs)
    for def_name, solution_obj in solution_defs.items():
        starter_obj = starter_defs[def_name]
        assert own_doc(starter_obj) == own_doc(solution_obj), def_name
        if inspect.isclass(solution_obj):
            assert [b.__name__ for b in starter_obj.__bases__] == [b.__name__ for b in solution_obj.__bases__]
            assert set(members(starter_obj)) == set(members(solution_obj)), def_name
            for member, solution_member in members(solution_obj).items():
                assert describe(members(starter_obj)[member]) == describe(solution_member), f"{def_name}.{member}"
        else:
            assert describe(starter_obj) == describe(solution_obj), def_name


@pytest.mark.parametrize("name", STARTER_FILES)
def test_every_todo_raises_a_one_line_not_implemented_message(name):
    text = (STARTER / name).read_text(encoding="utf-8")
    messages = [line.strip() for line in text.splitlines() if "raise NotImplementedError(" in line]
    assert messages, f"{name} has no TODO"
    assert all('NotImplementedError("not implemented yet: ' in message for message in messages)
    assert text.count("TODO") >= len(messages)


def test_the_starter_lora_layer_fails_with_its_todo_message():
    import torch.nn as nn

    layer_module = load_starter("lora/layer.py")
    with pytest.raises(NotImplementedError, match=r"^not implemented yet: LoRALinear.__init__"):
        layer_module.LoRALinear(nn.Linear(4, 3), 2, 4.0)
