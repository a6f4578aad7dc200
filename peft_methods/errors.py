"""`PeftMethodError`: what `peft_methods` raises when a setting or a saved file cannot work.

A ValueError, so plain Python catches it; the project's scripts turn it into
one line on stderr and exit status 2 (as lora's LoRAError).
"""


class PeftMethodError(ValueError):
    """A setting or saved tensor set that cannot work with this model."""
