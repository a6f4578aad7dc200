"""Instructor only: realistic wrong LoRA implementations that the grader must catch.

Each entry in `mutations.MUTATIONS` is a small text patch on a copy of the
solution files in lora/, with the rubric line that must fail. Left out of
the student handout.
"""
