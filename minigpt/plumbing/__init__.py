"""Plumbing a reader of the model may skip: one-line errors, checked reading, crash-safe writes, locks, flags.

Every script and library module imports these from the file that holds them, e.g.
`from minigpt.plumbing.errors import UserError`.
"""
