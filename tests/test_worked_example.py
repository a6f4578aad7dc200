"""The worked example (worked_example.py) against hand-written formulas, and the README's copy against the script.

The expected numbers are computed here in plain torch from the formulas of the
LoRA paper (h = W x + (alpha/r) B A x, and their gradients by the chain rule),
never through lora/, so a change in LoRALinear's init, scaling, gradients or
merge shows up as a printed number that no longer matches.
"""

import re
from pathlib import Path

import pytest
import torch

import worked_example
from worked_example import ALPHA, A, LEARNING_RATE, R, W, X, Y

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- worked-example:start -->", "<!-- worked-example:end -->"
# False while README.md may lack the markers (skip); True makes a README without them fail.
README_MUST_HAVE_WORKED_EXAMPLE = True


def by_hand() -> dict:
    """Every printed quantity, from the formulas alone (float64, as the script)."""
    dtype = torch.float64
    w, x, y, a = (torch.tensor(v, dtype=dtype) for v in (W, X, Y, A))  # (4, 3), (3,), (4,), (1, 3)
    s = ALPHA / R
    b0 = torch.zeros(4, 1, dtype=dtype)  # LoRA's init: B = 0
    ax = a @ x  # (1,)
    h0 = w @ x + s * (b0 @ ax)
    e0 = h0 - y  # dL/dh for L = 1/2 |h - y|^2
    grad_b0 = s * torch.outer(e0, ax)  # dL/dB = s (h - y) (A x)^T, (4, 1)
    grad_a0 = s * torch.outer(b0.T @ e0, x)  # dL/dA = s B^T (h - y) x^T, (1, 3)
    b1 = b0 - LEARNING_RATE * grad_b0
    a1 = a - LEARNING_RATE * grad_a0
    h1 = w @ x + s * (b1 @ (a1 @ x))
    e1 = h1 - y
    grad_a1 = s * torch.outer(b1.T @ e1, x)
    delta = s * b1 @ a1
    return {"W": w, "A": a, "B0": b0[:, 0], "h0": h0, "Wx": w @ x, "Ax": ax.item(), "e0": e0, "loss0": 0.5 * (e0 ** 2).sum().item(),
            "grad_B0": grad_b0[:, 0], "grad_A0": grad_a0[0], "B1": b1[:, 0], "h1": h1, "loss1": 0.5 * (e1 ** 2).sum().item(),
            "grad_A1": grad_a1[0], "merged_W": w + delta, "delta": delta, "merged_h": (w + delta) @ x}


def brackets(line: str) -> list[list[float]]:
    """The numbers of each [ ... ] group on a line."""
    return [[float(v) for v in group.split()] for group in re.findall(r"\[([^\]]*)\]", line)]


def line_with(section: str, start: str) -> str:
    found = [line for line in section.splitlines() if line.strip().startswith(start)]
    assert len(found) == 1, f"expected one line starting with {start!r} in:\n{section}"
    return found[0]


def scalar(line: str, name: str) -> float:
    match = re.search(rf"{re.escape(name)} = (-?\d+\.\d+)", line)
    assert match, f"no '{name} = <number>' in {line!r}"
    return float(match.group(1))


def close(printed, expected) -> bool:
    """Equal at the two printed decimals."""
    expected = expected.flatten().tolist() if torch.is_tensor(expected) else expected
    if isinstance(printed, list) and printed and isinstance(printed[0], list):
        printed = [v for row in printed for v in row]
    return printed == pytest.approx(expected, abs=0.005 + 1e-9)


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    text = worked_example.worked_example()
    parts = text.split("\n\n")
    assert len(parts) == 5, text
    return dict(zip(("header", "matrices", "step0", "step1", "merge"), parts))


def test_inputs_are_printed_as_given(sections):
    rows = sections["matrices"].splitlines()[1:]
    expected = by_hand()
    assert [brackets(row)[0] for row in rows] == expected["W"].tolist()
    assert close(brackets(rows[0])[1], expected["A"][0])
    assert all(close(brackets(row)[-1], [value]) for row, value in zip(rows, expected["B0"].tolist()))
    x_printed, y_printed = brackets(sections["header"].splitlines()[1])
    assert (x_printed, y_printed) == (X, Y)


def test_step_zero_output_is_the_base_output_and_only_b_gets_a_gradient(sections):
    expected, step = by_hand(), sections["step0"]
    h, wx = brackets(line_with(step, "h ="))
    assert close(h, expected["h0"]) and close(wx, expected["Wx"]) and close(h, expected["Wx"])
    line = line_with(step, "A x =")
    assert close(scalar(line, "A x"), expected["Ax"]) and close(scalar(line, "loss"), expected["loss0"])
    assert close(brackets(line)[0], expected["e0"])
    assert close(brackets(line_with(step, "dL/dB ="))[0], expected["grad_B0"])
    assert close(brackets(line_with(step, "dL/dA ="))[0], expected["grad_A0"])
    assert expected["grad_A0"].abs().max() == 0 and expected["grad_B0"].abs().max() > 0  # the point the example makes


def test_one_sgd_step_moves_b_lowers_the_loss_and_gives_a_a_gradient(sections):
    expected, step = by_hand(), sections["step1"]
    assert close(brackets(line_with(step, "B ="))[0], expected["B1"])
    line = line_with(step, "h =")
    assert close(brackets(line)[0], expected["h1"]) and close(scalar(line, "loss"), expected["loss1"])
    assert expected["loss1"] < expected["loss0"]
    assert close(brackets(line_with(step, "dL/dA ="))[0], expected["grad_A1"])


def test_merged_weight_and_its_output_match_the_formulas(sections):
    expected, rows = by_hand(), sections["merge"].splitlines()
    table = [brackets(row) for row in rows[2:6]]
    assert close([row[0] for row in table], expected["merged_W"])
    assert close([row[1] for row in table], expected["delta"])
    merged_line = line_with(sections["merge"], "W' x =")
    assert close(brackets(merged_line)[0], expected["merged_h"]) and close(brackets(merged_line)[0], expected["h1"])
    assert "largest difference 0.00" in merged_line


def test_script_prints_the_example(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["worked_example.py"])
    worked_example.main()
    assert capsys.readouterr().out == worked_example.worked_example() + "\n"


def test_readme_worked_example_is_the_scripts_output():
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        if README_MUST_HAVE_WORKED_EXAMPLE:
            pytest.fail(f"README.md lacks the {START} ... {END} block")
        pytest.skip("README.md has no worked-example markers yet")
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = [line.rstrip() for line in block.strip("\n").splitlines() if not line.startswith("```")]  # the code fence is not output
    expected = [line.rstrip() for line in worked_example.worked_example().splitlines()]
    assert lines == expected, "README.md's worked example differs from the script: paste `python worked_example.py` between the markers"
