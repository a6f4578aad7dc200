"""`python -m coursework.grade`: grade one repository copy, or a folder of submissions into one CSV.

    python -m coursework.grade [PATH]                      # PATH's lora/: scorecard, PATH/grade.json
    python -m coursework.grade --submissions DIR [--csv F] # every folder in DIR: one CSV row per student

The student's code never runs in this process (runner.py, worker.py). Exit
status: 0 whatever the scores (a low score is a result, not an error); 2 with
one line on stderr for bad usage (a missing folder, a --timeout that is not a
positive finite number), an output that cannot be written (full disk,
read-only or /proc target), or another run writing the same output; 130
with one line for Ctrl-C, at any instant.
"""

import os
import signal
import sys

if __name__ == "__main__":  # as a command only: a test that imports this module keeps its own handler
    # Ctrl-C while torch is still loading (minigpt's package imports it): one line, not a KeyboardInterrupt traceback,
    # which inside numpy's or torch's imports may also be swallowed (the run goes on) or break them. main() takes over.
    # os._exit, not sys.exit: a SystemExit raised inside an import can be swallowed; nothing is written yet.
    signal.signal(signal.SIGINT, lambda *_: (print("interrupted during start-up; nothing was written", file=sys.stderr, flush=True),
                                             os._exit(130)))

import csv
import fcntl
import io
import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

from minigpt.plumbing.atomic_writes import atomic_write_text
from minigpt.plumbing.errors import UserError, another_output, output_argument
from minigpt.plumbing.flags import ArgumentParser, positive_int
from coursework.rubric import RUBRIC
from coursework.runner import DEFAULT_TIMEOUT, grade_paths

MAX_TIMEOUT = 600.0


def timeout_seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, got {text!r}")
    return value


# The defaults --help shows; each stands for a place worked out from the other arguments after parsing.
DEFAULT_OUT, DEFAULT_CSV = "PATH/grade.json", "SUBMISSIONS/grades.csv"


def parse_args(argv=None):
    parser = ArgumentParser(prog="python -m coursework.grade",
                            description="Grade the lora/ package of a repository copy, or of every submission in a folder.")
    parser.add_argument("path", nargs="?", default=".", help="root of the repository copy whose lora/ is graded")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write one copy's JSON report")
    parser.add_argument("--submissions", default=None,
                        help="a folder holding one folder per student (each with its lora/); grades them all into one CSV")
    parser.add_argument("--csv", default=DEFAULT_CSV, help="with --submissions: the CSV to write")
    parser.add_argument("--workers", type=positive_int, default=1, help="with --submissions: sandboxed workers side by side")
    parser.add_argument("--timeout", type=timeout_seconds, default=DEFAULT_TIMEOUT, help="seconds allowed per check")
    return parser.parse_args(argv)


def format_scorecard(report: dict) -> str:
    width = max(len(line["id"]) for line in report["lines"])
    rows = [f"grading {report['lora']} (student code isolated by: {report['isolation']})", ""]
    for line in report["lines"]:
        verdict = "PASS" if line["passed"] else "FAIL"
        points = f"{line['points']:>2}/{line['max_points']:<2}"
        rows.append(f"  {line['id']:<{width}}  {points}  {verdict}" + (f"  {line['message']}" if line["message"] else ""))
    if report["tampered"]:
        rows += ["", f"score withheld: the grader's own files changed while this submission was graded "
                     f"({', '.join(report['tampered'][:3])}); restore them (git checkout -- coursework minigpt) and grade again"]
    rows += ["", f"total: {report['score']}/{report['max_score']}"]
    return "\n".join(rows)


@contextmanager
def exclusive(output: Path):
    """A lock beside `output`, so two runs never write it at once; removed afterwards."""
    if output.is_dir():  # found now, not after the whole class has been graded
        raise UserError(f"{output} is a directory; {another_output()} (a file path)")
    lock_path = output.parent / f".{output.name}.lock"
    try:
        handle = open(lock_path, "a")
    except OSError as error:
        raise UserError(f"cannot write beside {output} ({error.strerror}); {another_output()}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another grading run is writing {output}; wait for it to finish or {another_output()}") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
    finally:
        handle.close()


def write(output: Path, text: str) -> None:
    try:
        atomic_write_text(output, text)
    except OSError as error:
        raise UserError(f"could not write {output} ({error.strerror or error}); free some disk space or {another_output()}") from None


def grade_one(args) -> None:
    if args.csv != DEFAULT_CSV or args.workers != 1:  # a class's flags: ignored for one copy, so refused
        raise UserError("--csv and --workers apply to a folder of submissions; add --submissions FOLDER, or leave them out")
    root = Path(args.path)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give the root of a repository copy")
    if not (root / "lora").is_dir():
        raise UserError(f"{root} has no lora/ package; give the root of a repository copy")
    out = root / "grade.json" if args.out == DEFAULT_OUT else Path(args.out)
    with exclusive(out):
        report = grade_paths([root.resolve()], timeout=args.timeout)[0]
        write(out, json.dumps(report, indent=2) + "\n")  # before printing, so a closed stdout cannot lose it
        args.wrote = out  # a Ctrl-C from now on keeps it, and says so
    print(format_scorecard(report))
    print(f"wrote {out}")


def csv_text(reports: list[dict], students: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "score", "max_score", *(line.id for line in RUBRIC), "isolation", "tampered", "failed_lines"])
    for student, report in zip(students, reports):
        points = {line["id"]: line["points"] for line in report["lines"]}
        failed = " | ".join(f"{line['id']}: {line['message']}" for line in report["lines"] if not line["passed"])
        writer.writerow([student, report["score"], report["max_score"], *(points[line.id] for line in RUBRIC),
                         report["isolation"], " ".join(report["tampered"]), failed])
    return buffer.getvalue()


def grade_folder(args) -> None:
    if args.out != DEFAULT_OUT:  # one copy's report: a class writes one CSV, so an --out given would be ignored
        raise UserError("--out names one copy's report; with --submissions the grades go to one CSV: use --csv")
    folder = Path(args.submissions)
    if not folder.is_dir():
        raise UserError(f"--submissions {folder} is not a directory; give the folder that holds one folder per student")
    students = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not students:
        raise UserError(f"--submissions {folder} holds no student folders; put each student's copy in a folder of its own")
    out = folder / "grades.csv" if args.csv == DEFAULT_CSV else Path(args.csv)
    started = time.monotonic()
    with output_argument("--csv"), exclusive(out):  # write errors name --csv, the flag that chose this file
        print(f"grading {len(students)} submissions from {folder} ({args.workers} worker{'s' if args.workers > 1 else ''})", flush=True)
        reports = grade_paths([(folder / name).resolve() for name in students], timeout=args.timeout, workers=args.workers,
                              progress=lambda report: print(f"  {Path(report['path']).name}: {report['score']}/{report['max_score']}",
                                                            flush=True))
        write(out, csv_text(reports, students))
        args.wrote = out
    elapsed = time.monotonic() - started
    print(f"graded {len(students)} submissions in {elapsed:.0f} s ({elapsed / len(students):.1f} s each); wrote {out}")


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def main(argv=None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the quiet start-up handler hands over: grading cleans up
    args = None
    try:
        try:
            args = parse_args(argv)
        except SystemExit as done:  # --help (0), or a bad argument, already reported in one line (2)
            return done.code if isinstance(done.code, int) else 2
        grade_folder(args) if args.submissions else grade_one(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        wrote = getattr(args, "wrote", None)
        print(f"interrupted after grading; {wrote} was written" if wrote else
              "interrupted: grading stopped, its workers and temporary copies removed; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `| head`: the reader left; the report is written already
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    except KeyboardInterrupt:  # in the instant between main's end and here: main printed its outcome already
        print("interrupted while exiting; the outcome above stands", file=sys.stderr)
        status = EXIT_INTERRUPTED
    # os._exit, not sys.exit: the interpreter's teardown resets the signal handlers, so a Ctrl-C during it would kill
    # the process by the signal (status -2); everything is written and every worker stopped by now.
    os._exit(status)
