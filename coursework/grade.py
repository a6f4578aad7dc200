"""`python -m coursework.grade [PATH]`: grade the `lora` package of a repository copy.

PATH is the root of a copy of this repository (default: the current
directory); its lora/ package is imported in a separate process, never the
grader's own. Prints one line per rubric item (id, points, PASS/FAIL, and on
failure a hint that names the mistake), the total, and writes grade.json.

Exit status: 0 whatever the score (a low score is a result, not an error),
even if grade.json cannot be written; 2 for bad usage (PATH missing, or
without a lora/ package).
"""

import argparse
import json
import sys
from pathlib import Path

from coursework.runner import DEFAULT_TIMEOUT, grade_paths


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coursework.grade", description="Grade the lora/ package of a repository copy against the coursework rubric.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("path", nargs="?", default=".", help="root of the repository copy whose lora/ is graded")
    parser.add_argument("--out", default="PATH/grade.json", help="where to write the JSON report")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds allowed per check")
    return parser.parse_args(argv)


def format_scorecard(report: dict) -> str:
    width = max(len(line["id"]) for line in report["lines"])
    rows = [f"grading {report['lora'] or report['path'] + '/lora (not importable)'}", ""]
    for line in report["lines"]:
        verdict = "PASS" if line["passed"] else "FAIL"
        points = f"{line['points']:>2}/{line['max_points']:<2}"
        rows.append(f"  {line['id']:<{width}}  {points}  {verdict}" + (f"  {line['message']}" if line["message"] else ""))
    rows += ["", f"total: {report['score']}/{report['max_score']}"]
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.path)
    if not root.is_dir():
        print(f"grade: {root} is not a directory; give the root of a repository copy", file=sys.stderr)
        return 2
    if not (root / "lora" / "__init__.py").is_file():
        print(f"grade: {root} has no lora/ package (lora/__init__.py); give the root of a repository copy", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print(f"grade: --timeout must be positive, got {args.timeout:g}", file=sys.stderr)
        return 2
    report = grade_paths([root.resolve()], timeout=args.timeout)[0]
    out = root / "grade.json" if args.out == "PATH/grade.json" else Path(args.out)
    try:  # written before printing, so a closed pipe on stdout cannot lose it
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        written = f"wrote {out}"
    except OSError as error:
        written = None
        print(f"grade: could not write {out} ({error.strerror}); the scorecard below stands", file=sys.stderr)
    print(format_scorecard(report))
    if written:
        print(written)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. `| head`: the reader left; grade.json is written already
        sys.stdout = None
        sys.exit(0)
