"""`LoRAError`: what `lora` raises when it is asked for something impossible.

A subclass of ValueError, so plain Python code can catch it as one; the
project's scripts turn it into one line on stderr and exit status 2. The
message always says what was wrong and what would be right.
"""


class LoRAError(ValueError):
    """A LoRA setting or adapter file that cannot work with this model."""
