"""ASSIGNMENT.md's rubric table is the grader's rubric: same lines, same points, same words."""

import re

from conftest import REPO
from coursework.rubric import MAX_SCORE, RUBRIC

ASSIGNMENT = REPO / "coursework" / "ASSIGNMENT.md"


def test_the_rubric_table_matches_the_grader():
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| (.+) \|$", ASSIGNMENT.read_text(encoding="utf-8"), re.MULTILINE)
    assert rows == [(line.id, str(line.points), line.checks) for line in RUBRIC]
    assert sum(int(points) for _, points, _ in rows) == MAX_SCORE


def test_the_assignment_names_the_commands_students_run():
    text = ASSIGNMENT.read_text(encoding="utf-8")
    for command in ("python -m coursework.grade", "python train_pretrain.py", "python train_finetune.py",
                    "python compare.py", "--rank", "--alpha", "--targets q_proj,v_proj"):
        assert command in text
