"""Convert a LoRA adapter directory to Hugging Face PEFT's on-disk layout, and back.

    python peft_convert.py to-peft dist/finetuning_results/lora_adapter dist/peft/cooking
    python peft_convert.py from-peft dist/peft/cooking dist/finetuning_results/adapters/cooking_from_peft

See experiment/serving/peft_format.py for the files and docs/serving.md for loading the export with PEFT.
"""

import os
import signal
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep instead of spinning, which
# keeps 2 threads fast on a busy machine and changes no result (docs/threads.md)

# Ctrl-C while torch is still loading: one line and exit status 130, never swallowed (run_cli takes over once main starts).
signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                         os._exit(130)))

from experiment.training.methods import USER_ERRORS  # noqa: E402
from experiment.serving.peft_format import export_peft, have_safetensors, import_peft  # noqa: E402
from minigpt.plumbing.errors import output_argument, run_cli  # noqa: E402
from minigpt.plumbing.flags import ArgumentParser  # noqa: E402
from minigpt.plumbing.output_lock import output_lock  # noqa: E402


def parse_args():
    parser = ArgumentParser(description="Convert a LoRA adapter directory to PEFT's layout (to-peft) or back (from-peft).")
    parser.add_argument("direction", choices=["to-peft", "from-peft"], help="to-peft: adapter -> PEFT; from-peft: PEFT -> adapter")
    parser.add_argument("source", help="the directory to read")
    parser.add_argument("destination", help="the directory to write (replaced if it holds only files this script writes)")
    parser.add_argument("--pretrained", default="dist/pretrained",
                        help="from-peft: the base model the adapter must load onto before it is written")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # like every writer: a second run on the same destination is refused, and an output where no lock file can be
    # made (/proc, a missing or read-only parent) is one line that says to choose another, before any work
    with output_argument("destination"), output_lock(args.destination):  # its output is no --out: errors say so
        convert(args)


def convert(args) -> None:
    if args.direction == "to-peft":
        out = export_peft(args.source, args.destination)
        tensor_format = "safetensors" if have_safetensors() else "torch .bin (install safetensors for .safetensors)"
        print(f"wrote {out}/ in PEFT's layout ({tensor_format}): " + ", ".join(sorted(p.name for p in out.iterdir())))
    else:
        out = import_peft(args.source, args.destination, args.pretrained)
        print(f"wrote adapter directory {out}/ (checked: it loads onto {args.pretrained}): " + ", ".join(sorted(p.name for p in out.iterdir())))


if __name__ == "__main__":
    run_cli(main, USER_ERRORS)
