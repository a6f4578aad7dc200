"""Run the named studies on top of dist/pretrained: many real fine-tuning runs, cached, tabled and plotted.

    python experiments.py seeds            # every method and the new-rows-only control over 3 seeds
    python experiments.py pareto --full    # the bigger grid: more rates over 3 seeds (63 runs)
    python experiments.py intrinsic-rank   # after train_finetune.py: is full fine-tuning's update low-rank?
    python experiments.py costs            # LoRA's time and memory per step up to SmolLM-135M's shape (untrained models)
    python experiments.py methods          # adapters, prefix, prompt, BitFit, IA3 beside full, freeze and LoRA

Every run is cached under dist/experiments/<study>/runs/, keyed by its settings
and the base model: stop with Ctrl-C and run the same command again to resume;
a finished study re-plots in seconds. Each study writes results.json,
results.md and its plots to dist/experiments/<study>/.
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

from experiment.training.data import add_finetune_data_flags
from experiment.training.methods import USER_ERRORS
from experiment.training.other_methods.catalog import OTHER_METHODS
from experiment.studies.runner import StudyContext
from experiment.studies.catalog import STUDIES, run_intrinsic_rank_study, run_overhead_study, run_study
from minigpt.plumbing.atomic_writes import ensure_writable_dir
from minigpt.plumbing.errors import UserError, run_cli
from minigpt.plumbing.flags import (ArgumentParser, add_common_flags, apply_threads, batch_size_flag, learning_rate,
                                   positive_int, seed_value, steps_flag)
from minigpt.plumbing.output_lock import output_lock

STUDY_NAMES = [*STUDIES, "intrinsic-rank", "overhead", "costs"]


def comma_list(kind):
    def parse(text: str):
        return tuple(kind(item) for item in text.split(",") if item.strip())
    return parse


def parse_args():
    parser = ArgumentParser(description="Run a named study: many fine-tuning runs on one base, cached, with a table and plots.")
    parser.add_argument("study", help="one of: " + "; ".join(f"{s.name} ({s.summary})" for s in STUDIES.values())
                        + "; intrinsic-rank (singular values of full fine-tuning's update, no training)"
                        + "; overhead (operations, arithmetic and time of an unmerged LoRA forward pass, no training)"
                        + "; costs (time, memory and training state of one step per method on randomly initialised Llama shapes "
                        "up to SmolLM-135M's, 960 wide with --full; needs transformers)")
    parser.add_argument("--full", action="store_true", help="the bigger grid: more seeds, rates, ranks or shapes, by study (docs/results.md lists most; targets has none)")
    parser.add_argument("--seeds", type=comma_list(seed_value), default=None,
                        help="comma-separated fine-tuning seeds (default: the study's own, e.g. 1337,1,2 for seeds)")
    parser.add_argument("--lrs", type=comma_list(learning_rate), default=None,
                        help="pareto study only: comma-separated learning rates for every method, instead of each method's grid")
    parser.add_argument("--ranks", type=comma_list(positive_int), default=None, help="rank study only: comma-separated ranks")
    parser.add_argument("--methods", type=comma_list(str), default=None,
                        help="comma-separated subset of full,freeze,lora,rows,adapters,prefix,prompt,bitfit,ia3 to run from the "
                        "study's grid (default: all)")
    parser.add_argument("--steps", type=steps_flag, default=None, help="steps per run (default: 150, as train_finetune.py)")
    parser.add_argument("--batch-size", type=batch_size_flag, default=None, help="windows per step (default: 32, as train_finetune.py)")
    parser.add_argument("--pretrained", default="dist/pretrained", help="the base model directory (train_pretrain.py)")
    parser.add_argument("--results", default="dist/finetuning_results", help="intrinsic-rank: the directory train_finetune.py wrote")
    parser.add_argument("--out", default="dist/experiments", help="studies' directory: runs cached under <out>/<study>/runs/")
    add_finetune_data_flags(parser)
    add_common_flags(parser, seed=1337, threads=1)  # many small runs: one thread each, fastest on a busy machine
    args = parser.parse_args()
    if args.study not in STUDY_NAMES:
        raise UserError(f"unknown study {args.study!r}; choose one of {', '.join(STUDY_NAMES)} (see python experiments.py --help)")
    known = ["full", "freeze", "lora", "rows", *OTHER_METHODS]
    unknown = set(args.methods or ()) - set(known)
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(sorted(unknown))} in --methods; choose from {', '.join(known)}")
    if args.lrs is not None and args.study != "pareto":
        raise UserError("--lrs applies to the pareto study only; leave it out or run: python experiments.py pareto --lrs 0.01,0.02")
    for name in ("seeds", "ranks", "methods", "lrs"):
        if getattr(args, name) == ():
            raise UserError(f"--{name} is empty, so the grid has no run; give at least one value, e.g. --{name} 1")
    return args


def main() -> None:
    args = parse_args()
    apply_threads(args.threads)
    with output_lock(args.out, replaced_whole=False):  # it writes files inside --out
        # a file, /proc or a read-only place: one line now, not a traceback after the first run; made inside the lock,
        # which removes it again if the study fails before writing anything
        ensure_writable_dir(args.out)
        run_named_study(args)


def run_named_study(args) -> None:
    start = time.perf_counter()
    if args.study == "intrinsic-rank":
        directory = run_intrinsic_rank_study(args.pretrained, args.results, args.out)
        print(f"wrote {directory}/results.md, results.json and spectra.png in {time.perf_counter() - start:.1f} s")
        return
    if args.study == "costs":
        from experiment.real_model.cost_report import run_cost_study  # noqa: PLC0415  (only this study needs transformers)
        from minigpt.device import choose_device  # noqa: PLC0415

        directory = run_cost_study(args.out, str(choose_device(args.device)), args.threads or 1, args.full, not args.no_progress,
                                   batch_size=args.batch_size or 1)
        print((directory / "results.md").read_text(encoding="utf-8"))
        print(f"wrote {directory}/results.md, results.json and costs.png in {time.perf_counter() - start:.1f} s")
        return
    if args.study == "overhead":
        directory = run_overhead_study(args.pretrained, args.out)
        print((directory / "results.md").read_text(encoding="utf-8"))
        return
    context = StudyContext(args.pretrained, args, args.out, args.device)
    directory, records = run_study(STUDIES[args.study], context, args.seeds, args.full, args.steps, args.batch_size,
                                   args.ranks, args.methods, args.lrs, not args.no_progress)
    print((directory / "results.md").read_text(encoding="utf-8"))
    print(f"{len(records)} runs; wrote {directory}/results.md, results.json and plots in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
