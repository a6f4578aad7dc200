"""Serving: several adapters on one base, what generate.py, compare_adapters.py and peft_convert.py run.

Reading order:
  server.py              AdapterServer: one base, adapters loaded by name, switched, disabled or mixed
  generation.py          prompts in, continuations out, with a key/value cache
  adapter_comparison.py  every adapter, a mix and its controls on every domain, and what switching costs
  peft_format.py         the adapter directory in Hugging Face PEFT's layout, and back
"""
