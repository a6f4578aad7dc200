"""Coursework for the LoRA part of this project: an assignment, starter code and an autograder.

ASSIGNMENT.md   what students do, and the rubric
INSTRUCTORS.md  instructors only: building the handout, grading a class, the grader's limits, model answers
starter/lora/   layer.py, apply.py, merge.py with the mathematics left as TODOs
handout.py      `python -m coursework.handout OUT_DIR`: the repository as students receive it, without answers
grade.py        `python -m coursework.grade [PATH | --submissions DIR]`: a scorecard, or one CSV for a class
rubric.py       the rubric lines (id, points, what they check)

The grading process (never imports student code):
runner.py       copies each submission, drives a sandboxed worker, validates its answers, withholds tampered scores
judging.py      inputs drawn afresh per run; untrusted answers read with type and shape checks
judge_layer.py, judge_model.py   one inputs_<id> and judge_<id> per rubric line: expected values, hints

The sandboxed worker (its code sent from the grading process's memory):
worker.py       forks one child per check, with a fresh pipe, limits and a timeout; PID namespace where available
probes.py       reading A and B out of a student's layer by behaviour, not by attribute names
measure_layer.py, measure_model.py   one measure_<id> per rubric line: runs student code, returns raw results

gallery/        instructor only: known-wrong implementations the grader must catch
"""
