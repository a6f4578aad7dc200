"""Several adapters on one base, measured: each adapter and their mix on each domain, and what switching costs.

    python compare_adapters.py     # after train_finetune.py and train_finetune.py --adapter-name sport (see docs/serving.md)

Loads the base and every --adapter onto it (experiment/serving/server.py), evaluates
the base, each adapter and their equal-weight mix on every domain's validation
loss and probes and on the pretraining corpus, times switching adapters
against loading a merged model from disk, and times generation with and
without the key/value cache. Writes adapters_comparison.md and .json.
"""

import os
import signal
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep instead of spinning, which
# keeps 2 threads fast on a busy machine and changes no result (docs/threads.md)

# Ctrl-C while torch is still loading: one line, not a KeyboardInterrupt traceback (run_cli takes over once main starts).
# os._exit, not sys.exit: a SystemExit raised inside an import can be swallowed; nothing is written yet, so nothing to clean up.
# (A KeyboardInterrupt inside numpy's or torch's imports can be swallowed too, the run going on, or leave numpy half-made.)
signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                         os._exit(130)))

import time

from experiment.serving.adapter_comparison import markdown, recorded_adapters, run_adapter_comparison
from experiment.training.data import default_probes, recorded_pretrain_corpus
from experiment.serving.generation import parse_named_path
from experiment.training.methods import USER_ERRORS
from minigpt.plumbing.atomic_writes import ensure_writable_dir
from minigpt.device import choose_device
from minigpt.plumbing.errors import UserError, run_cli
from minigpt.plumbing.flags import ArgumentParser, add_common_flags, apply_threads, whole_number_up_to

RESULTS = "dist/finetuning_results"


def parse_args():
    parser = ArgumentParser(description="Compare several LoRA adapters served on one base: quality per domain, switching and generation costs.")
    parser.add_argument("--pretrained", default="dist/pretrained", help="the base model directory")
    parser.add_argument("--results", default=RESULTS, help="the directory train_finetune.py wrote: the default adapters and domains")
    parser.add_argument("--adapter", nargs="+", default=None, metavar="NAME=DIR", help="adapters to load, two or more (default: "
                        "the results' lora_adapter/ and every adapters/NAME/ beside it, each named after its corpus)")
    parser.add_argument("--domain", nargs="+", default=None, metavar="NAME=CORPUS[:PROBES]", help="domains to evaluate on "
                        "(default: the corpus each default adapter was fine-tuned on, as the results record it)")
    parser.add_argument("--pretrain-corpus", default=None, help="pretraining corpus, for forgetting "
                        "(default: the corpus the base was pretrained on, recorded in its run.json)")
    parser.add_argument("--pretrain-probes", default=None, help="pretraining probes (default: <corpus>_probes.json beside it, if any)")
    parser.add_argument("--merged", default=None, help="a merged model directory, for the load-time comparison "
                        "(default: the results' lora_merged/)")
    parser.add_argument("--repeats", type=whole_number_up_to(1000, "a bound on the work asked for"), default=15, help="timed repetitions of each operation (medians reported)")
    parser.add_argument("--out", default=None, help="where adapters_comparison.md and .json go (default: --results)")
    add_common_flags(parser, seed=1337)
    return parser.parse_args()


def parse_domain(text: str) -> tuple[str, tuple[str, str]]:
    name, path = parse_named_path(text, "--domain")
    corpus, sep, probes = str(path).partition(":")
    if sep and not probes:
        raise UserError(f"--domain {text!r} must look like NAME=CORPUS or NAME=CORPUS:PROBES, e.g. sport=data/sport.txt")
    return name, (corpus, probes or None)


def main() -> None:
    args = parse_args()
    apply_threads(args.threads)
    start = time.perf_counter()
    recorded = recorded_adapters(args.results) if args.adapter is None or args.domain is None else {}
    args.adapter_paths = ([parse_named_path(text, "--adapter") for text in args.adapter] if args.adapter is not None
                          else [(name, path) for name, (path, _) in recorded.items()])
    args.domains = ([parse_domain(text) for text in args.domain] if args.domain is not None
                    else [(name, (corpus, None)) for name, (_, corpus) in recorded.items()])
    args.merged = args.merged or f"{args.results}/lora_merged"
    args.out = args.out or args.results
    args.pretrain_corpus = args.pretrain_corpus or recorded_pretrain_corpus(args.pretrained)  # forgetting: the base's own corpus
    args.pretrain_probes = default_probes(args.pretrain_corpus, args.pretrain_probes, "--pretrain-probes")[0]
    args.domains = [(name, (corpus, default_probes(corpus, probes, "--domain")[0])) for name, (corpus, probes) in args.domains]
    ensure_writable_dir(args.out)
    result = run_adapter_comparison(args, choose_device(args.device))
    print(markdown(result))
    print(f"words two adapters both add (one id, each adapter its own row): {result['shared_words']}")
    print(f"wrote {args.out}/adapters_comparison.md and .json in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
