"""The walkthrough notebook runs top to bottom without an error, and it is committed with its outputs.

The run executes a temporary copy with nbclient and the local ipykernel (both in
requirements.txt), so the committed file is never rewritten by a test. The
notebook's own cells assert what its text claims (B = 0 gives the base output,
A's gradient is zero at step 0, merged equals unmerged, the fine-tune lowers the
cooking loss), so a change in lora/ or minigpt/ that breaks a claim fails here.
"""

import importlib.util
import shutil

import nbformat
import pytest

from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "lora_walkthrough.ipynb"


def load_execute_script():
    spec = importlib.util.spec_from_file_location("execute_notebook", REPO / "notebooks" / "execute_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_committed_notebook_has_outputs_from_one_run_top_to_bottom():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1)), \
        "re-run it top to bottom: python notebooks/execute_notebook.py"
    assert all(cell.outputs for cell in cells), "every code cell shows something"
    assert not [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    plots = [o for cell in cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(plots) >= 2, "the toy-task loss and the fine-tuning loss are plotted inline"


def test_notebook_runs_top_to_bottom_without_an_error(tmp_path):
    from nbclient.exceptions import CellExecutionError

    committed = NOTEBOOK.read_bytes()
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    try:
        executed = load_execute_script().execute(copy)
    except CellExecutionError as error:
        pytest.fail(f"a notebook cell failed:\n{error}")
    cells = code_cells(executed)
    assert all(cell.execution_count for cell in cells)
    assert NOTEBOOK.read_bytes() == committed, "the test must not rewrite the committed notebook"
