"""The five methods beside LoRA: name, result folder, default learning rate, label, and their command-line flags.

Default learning rates, by the rule the first three follow (experiment/training/methods.py): the smallest rate of
each method's 3-rate grid (python experiments.py methods, seed 1337) that learns at least 90% of the new-domain
probes in the default 150 steps, else the rate that learns the most; docs/other_methods.md has the grid.
"""

from argparse import Namespace

from experiment.training.methods import Method
from minigpt.plumbing.flags import positive_int
from peft_methods import PROMPT_INITS, BottleneckAdapterConfig, IA3Config, PrefixTuningConfig, PromptTuningConfig

OTHER_METHODS = {
    "adapters": Method("adapters", "other_methods/adapters", 3e-2, "bottleneck adapters"),
    "prefix": Method("prefix", "other_methods/prefix", 3e-2, "prefix tuning"),
    "prompt": Method("prompt", "other_methods/prompt", 1e-1, "prompt tuning"),
    "bitfit": Method("bitfit", "other_methods/bitfit", 1e-1, "BitFit"),
    "ia3": Method("ia3", "other_methods/ia3", 1e-1, "IA3"),
}
MERGEABLE = ("bitfit", "ia3")  # a plain MiniGPT afterwards, saved beside the small result


def add_other_method_flags(parser) -> None:
    group = parser.add_argument_group("methods beside LoRA (PEFT's names where PEFT has the method; docs/other_methods.md)")
    group.add_argument("--adapter-size", type=int, default=BottleneckAdapterConfig.adapter_size,
                       help="bottleneck adapters: the bottleneck width m")
    group.add_argument("--adapter-targets", default=",".join(BottleneckAdapterConfig.target_modules),
                       help="bottleneck adapters: the layers an adapter follows")
    group.add_argument("--num-virtual-tokens", type=int, default=PrefixTuningConfig.num_virtual_tokens,
                       help="prefix and prompt tuning: context positions p they take")
    group.add_argument("--no-prefix-projection", action="store_true",
                       help="prefix tuning: train the key/value table directly, without the MLP (PEFT's prefix_projection=False)")
    group.add_argument("--encoder-hidden-size", type=positive_int, default=PrefixTuningConfig.encoder_hidden_size,
                       help="prefix tuning: the reparametrisation MLP's width")
    group.add_argument("--prompt-tuning-init", choices=PROMPT_INITS, default=PromptTuningConfig.prompt_tuning_init,
                       help="prompt tuning: start from the embeddings of --prompt-tuning-init-text, or random")
    group.add_argument("--prompt-tuning-init-text", default=PromptTuningConfig.prompt_tuning_init_text,
                       help="prompt tuning: the words whose embeddings start the prompt")
    group.add_argument("--ia3-targets", default=",".join(IA3Config.target_modules), help="IA3: PEFT's target_modules")
    group.add_argument("--feedforward-modules", default=",".join(IA3Config.feedforward_modules),
                       help="IA3: PEFT's feedforward_modules (their input is scaled, not their output)")


def names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def method_config(name: str, args: Namespace):
    """The method's config from the flags; a Namespace without them (the studies) gets every default."""
    value = lambda flag, default: getattr(args, flag, default)  # noqa: E731
    if name == "adapters":
        return BottleneckAdapterConfig(value("adapter_size", 8), names(value("adapter_targets", "o_proj,down_proj")))
    if name == "prefix":
        return PrefixTuningConfig(value("num_virtual_tokens", 8), not value("no_prefix_projection", False),
                                  value("encoder_hidden_size", 64))
    if name == "prompt":
        return PromptTuningConfig(value("num_virtual_tokens", 8), value("prompt_tuning_init", "TEXT"),
                                  value("prompt_tuning_init_text", PromptTuningConfig.prompt_tuning_init_text))
    if name == "ia3":
        return IA3Config(names(value("ia3_targets", "k_proj,v_proj,down_proj")), names(value("feedforward_modules", "down_proj")))
    return None  # BitFit has no setting
