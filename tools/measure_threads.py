"""How fast pretraining runs with 1 or 2 torch threads, on an idle machine and beside busy processes.

    nice -n 10 python tools/measure_threads.py                 # a few minutes on a 2-core machine
    nice -n 10 python tools/measure_threads.py --repeats 5 --steps 30

Each option has its own worker process (started once, so OpenMP reads the
option's settings and torch is imported once); a trial asks it to train the default MiniGPT (width 64, 4 layers, vocabulary 800, batch 32,
context 64) for --steps steps after 2 warm-up steps and report seconds per
step (start-up, data loading and evaluation excluded), while `--busy`
background processes spin (`while True: pass`). Options and loads are interleaved (every option once
per load, then again), so a change in the machine's other work hits all
options alike; the table gives each option's median and range in seconds per
step. Writes the table to stdout and every trial to --out as JSON lines.

The options:
  2 threads             --threads 2 (torch's choice on a 2-core machine)
  1 thread              --threads 1
  2 threads passive     --threads 2 with OMP_WAIT_POLICY=PASSIVE: an idle OpenMP
                        thread sleeps instead of spinning while it waits

Each line also records the 1-minute load average and what an automatic rule
("1 thread once the load reaches the number of cores") would have picked.
The scripts' default is 2 threads passive (docs/threads.md says why).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OPTIONS = {
    "2 threads": (["--threads", "2"], {}),
    "1 thread": (["--threads", "1"], {}),
    "2 threads passive": (["--threads", "2"], {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def start_worker(option: str) -> subprocess.Popen:
    """A worker process for `option`, started once (torch imports once; OpenMP reads its settings at start)."""
    flags, extra_env = OPTIONS[option]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(extra_env)
    return subprocess.Popen([sys.executable, __file__, "--worker", *flags], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def trial(worker_process: subprocess.Popen, steps: int) -> float:
    """Seconds per training step, measured by the option's worker."""
    worker_process.stdin.write(f"{steps}\n")
    worker_process.stdin.flush()
    return float(worker_process.stdout.readline())


def worker(threads: int | None) -> None:
    """For every number N read from stdin: train the default MiniGPT (vocabulary 800, batch 32, context 64) for
    N steps after 2 warm-up steps and print seconds per step. The optimizer and loss of minigpt/training.py;
    no data loading or evaluation."""
    import torch
    from minigpt.config import GPTConfig
    from minigpt.plumbing.flags import apply_threads
    from minigpt.model import MiniGPT
    from minigpt.training import TrainConfig, make_optimizer
    apply_threads(threads)
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=800)).train()
    optimizer = make_optimizer(model, TrainConfig())
    x, y = torch.randint(800, (2, 32, 64))
    for line in sys.stdin:
        steps = int(line)
        for step in range(2 + steps):
            if step == 2:
                start = time.perf_counter()
            _, loss = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print((time.perf_counter() - start) / steps, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="pretraining steps per trial")
    parser.add_argument("--repeats", type=int, default=2, help="trials per option and load")
    parser.add_argument("--busy", default="0,2,6", help="comma-separated numbers of background busy processes")
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated options to measure")
    parser.add_argument("--out", default="dist/threads.jsonl", help="every trial as one JSON line")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.threads)
        return
    options = args.options.split(",")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    seconds = {}
    workers = {option: start_worker(option) for option in options}
    with open(args.out, "a", encoding="utf-8") as log:
        for busy in [int(b) for b in args.busy.split(",")]:
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                time.sleep(2 if busy else 0)  # let the spinners take their cores
                for repeat in range(args.repeats):
                    for option in options if repeat % 2 == 0 else options[::-1]:  # A B C D, D C B A, ...
                        load = os.getloadavg()[0]
                        per_step = trial(workers[option], args.steps)
                        seconds.setdefault((busy, option), []).append(per_step)
                        row = {"busy": busy, "option": option, "repeat": repeat, "seconds_per_step": per_step, "load": load,
                               "auto_rule_would_use": 1 if load >= len(os.sched_getaffinity(0)) else 2,
                               "cores": os.cpu_count(), "steps": args.steps, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        print(f"busy {busy}  {option:<20} {per_step * 1000:7.1f} ms/step  (load {load:.1f})", flush=True)
            finally:
                for spinner in spinners:
                    spinner.kill()
                    spinner.wait()
    for process in workers.values():
        process.stdin.close()
        process.wait()
    print(f"\n| background busy processes | {' | '.join(options)} |")
    print("|---|" + "---|" * len(options))
    for busy in sorted({b for b, _ in seconds}):
        cells = []
        for option in options:
            values = seconds[(busy, option)]
            cells.append(f"{statistics.median(values) * 1000:.0f} ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})")
        print(f"| {busy} | {' | '.join(cells)} |")
    print("\nms per training step: median (min-max) over the trials; "
          f"{args.repeats} trials each, {args.steps} steps, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
