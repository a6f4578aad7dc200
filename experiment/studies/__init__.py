"""The studies: what experiments.py runs, many real fine-tuning runs cached by their settings.

Reading order:
  catalog.py         the named studies (seeds, pareto, rank, targets, replay, variants, methods, ...) and what each writes
  runner.py          one cached run, grids of runs, and means and spreads over seeds
  study_plots.py     seed bars, Pareto fronts, rank and target sweeps
  intrinsic_rank.py  is full fine-tuning's update low-rank? (singular values of W_after - W_before)
  overhead.py        why an unmerged LoRA model is slower at this size: operations counted and timed
"""
