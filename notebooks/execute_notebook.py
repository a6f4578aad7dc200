"""Run notebooks/lora_walkthrough.ipynb top to bottom and save it with its outputs (no Jupyter server needed).

    python notebooks/execute_notebook.py                     # re-executes the notebook and saves it in place
    python notebooks/execute_notebook.py --out /tmp/run.ipynb

Uses nbclient with the local ipykernel (both in requirements.txt). The kernel
starts in the repository root and runs on one CPU thread. A failing cell stops
the run with its error, and the notebook is then left as it was; the saved file
is written to a temporary name and renamed into place.
"""

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "lora_walkthrough.ipynb"
sys.path.insert(0, str(REPO))

from minigpt.plumbing.atomic_writes import atomic_write_text  # noqa: E402
from minigpt.plumbing.errors import UserError, run_cli  # noqa: E402
from minigpt.plumbing.flags import ArgumentParser, positive_int  # noqa: E402
from minigpt.plumbing.reading import check_input_file  # noqa: E402


def execute(path: str | Path, timeout: int = 600):
    """The notebook at `path`, executed top to bottom in the repository root; nbclient's CellExecutionError on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread, as the notebook's first cell sets
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return notebook


def parse_args():
    parser = ArgumentParser(description="Execute the LoRA walkthrough notebook top to bottom and save it with its outputs.")
    parser.add_argument("--notebook", default=str(NOTEBOOK.relative_to(REPO)), help="notebook to run")
    parser.add_argument("--out", default=None, help="where to save the executed notebook (default: over --notebook)")
    parser.add_argument("--timeout", type=positive_int, default=600, help="seconds one cell may run")
    return parser.parse_args()


def main() -> None:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    args = parse_args()
    path = check_input_file(args.notebook, "notebook", "pass an existing .ipynb file")
    start = time.perf_counter()
    try:
        notebook = execute(path, args.timeout)
    except CellExecutionError as error:
        raise UserError(f"a cell of {path} failed, so nothing was saved: {str(error).strip().splitlines()[-1]}") from None
    out = args.out or path
    atomic_write_text(out, nbformat.writes(notebook) + "\n")
    print(f"executed {path} in {time.perf_counter() - start:.1f} s; saved with outputs to {out}")


if __name__ == "__main__":
    run_cli(main)
