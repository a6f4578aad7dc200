"""The methods before and beside LoRA, from scratch, torch alone: each freezes the base and trains something small.

Reading order (each file opens with its equation, its place in a block, its
trainable-parameter formula and the paper section):
  bottleneck_adapter.py  Houlsby adapters after attention and after the feed-forward layer (not mergeable)
  prefix_tuning.py       p learned keys and values per layer, trained through an MLP, folded after (not mergeable)
  prompt_tuning.py       p learned input embeddings (not mergeable)
  bitfit.py              only the biases train (a plain model afterwards)
  ia3.py                 learned vectors rescaling keys, values and the feed-forward activation (merged after)
  virtual_tokens.py      what prefix and prompt tuning share: the positions they take from the context
  modules.py, errors.py  plumbing: finding layers by name, copying tensors in, the error type
"""

from peft_methods.bitfit import apply_bitfit, bitfit_parameter_count, bitfit_state_dict, load_bitfit_state_dict
from peft_methods.bottleneck_adapter import (ADAPTER_MARKER, AdaptedOutput, BottleneckAdapterConfig, adapter_parameter_count,
                                             apply_bottleneck_adapters)
from peft_methods.errors import PeftMethodError
from peft_methods.ia3 import IA3_MARKER, IA3Config, IA3Linear, apply_ia3, ia3_parameter_count, merge_ia3
from peft_methods.modules import load_trainable_state_dict, trainable_state_dict
from peft_methods.prefix_tuning import PrefixEncoder, PrefixTuningConfig, apply_prefix_tuning, prefix_parameter_count
from peft_methods.prompt_tuning import PROMPT_INITS, PromptEmbedding, PromptTuningConfig, apply_prompt_tuning, prompt_parameter_count
