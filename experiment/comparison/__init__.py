"""The comparison: what compare.py runs, every model measured from the files on disk.

Reading order:
  side_by_side.py  load every model, check they belong together, evaluate, write the table and plots
  measure.py       bytes on disk and milliseconds per generated token
  variant_rows.py  the LoRA variants' rows, each merged copy checked against its adapter
  other_method_rows.py  the rows of adapters, prefix, prompt, BitFit and IA3: context left, latency with the KV cache, base, swap
  report.py        the console table and the Markdown report
"""
