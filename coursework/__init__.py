"""Coursework for the LoRA part of this project: an assignment, starter code and an autograder.

ASSIGNMENT.md   what students do, and the rubric
starter/lora/   layer.py, apply.py, merge.py with the mathematics left as TODOs
handout.py      `python -m coursework.handout OUT_DIR`: the repository as students receive it
grade.py        `python -m coursework.grade [PATH]`: grade the lora/ package of a repository copy
rubric.py       the rubric lines (id, points, what they check)
probes.py       reading A, B and delta_W out of a LoRA layer by behaviour, not by attribute names
checks_layer.py, checks_model.py   one function per rubric line
worker.py, runner.py   the checks run in a child process, under a watchdog
gallery/        instructor only: known-wrong implementations the grader must catch
"""
