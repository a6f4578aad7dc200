"""Several adapters on one base, measured: each adapter and their mix on each domain, and what switching costs.

    python compare_adapters.py     # after train_finetune.py and train_finetune.py --adapter-name sport (see README 3.5)

Loads the base and every --adapter onto it (experiment/serving/server.py), evaluates
the base, each adapter and their equal-weight mix on every domain's validation
loss and probes and on the pretraining corpus, times switching adapters
against loading a merged model from disk, and times generation with and
without the key/value cache. Writes adapters_comparison.md and .json.
"""

import time

from experiment.serving.adapter_comparison import markdown, run_adapter_comparison
from experiment.serving.generation import parse_named_path
from experiment.training.methods import USER_ERRORS
from minigpt.device import choose_device
from minigpt.io import ArgumentParser, UserError, add_common_flags, ensure_writable_dir, positive_int, run_cli, whole_number_up_to

RESULTS = "dist/finetuning_results"
ADAPTERS = [f"cooking={RESULTS}/lora_adapter", f"sport={RESULTS}/adapters/sport"]
DOMAINS = ["cooking=data/cooking.txt:data/cooking_probes.json", "sport=data/sport.txt:data/sport_probes.json"]


def parse_args():
    parser = ArgumentParser(description="Compare several LoRA adapters served on one base: quality per domain, switching and generation costs.")
    parser.add_argument("--pretrained", default="dist/pretrained", help="the base model directory")
    parser.add_argument("--adapter", nargs="+", default=ADAPTERS, metavar="NAME=DIR", help="adapters to load (two or more)")
    parser.add_argument("--domain", nargs="+", default=DOMAINS, metavar="NAME=CORPUS:PROBES", help="domains to evaluate on")
    parser.add_argument("--pretrain-corpus", default="data/pretrain.txt", help="pretraining corpus (forgetting)")
    parser.add_argument("--pretrain-probes", default="data/pretrain_probes.json", help="pretraining probes (forgetting)")
    parser.add_argument("--merged", default=f"{RESULTS}/lora_merged", help="a merged model directory, for the load-time comparison")
    parser.add_argument("--repeats", type=whole_number_up_to(1000, "a bound on the work asked for"), default=15, help="timed repetitions of each operation (medians reported)")
    parser.add_argument("--out", default=RESULTS, help="where adapters_comparison.md and .json go")
    add_common_flags(parser, seed=1337)
    return parser.parse_args()


def parse_domain(text: str) -> tuple[str, tuple[str, str]]:
    name, path = parse_named_path(text, "--domain")
    corpus, sep, probes = str(path).partition(":")
    if not sep or not probes:
        raise UserError(f"--domain {text!r} must look like NAME=CORPUS:PROBES, e.g. sport=data/sport.txt:data/sport_probes.json")
    return name, (corpus, probes)


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    args.adapter_paths = [parse_named_path(text, "--adapter") for text in args.adapter]
    args.domains = [parse_domain(text) for text in args.domain]
    ensure_writable_dir(args.out)
    result = run_adapter_comparison(args, choose_device(args.device))
    print(markdown(result))
    print(f"words two adapters both add (one id, each adapter its own row): {result['shared_words']}")
    print(f"wrote {args.out}/adapters_comparison.md and .json in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
