"""`python -m coursework.handout OUT_DIR`: the repository as students receive it.

Copies the repository's files (what `git ls-files` lists, tracked files and
new files git does not ignore; without git, a walk of the tree) into OUT_DIR,
puts the starter versions of lora/layer.py, lora/apply.py and lora/merge.py
in place of the solution, leaves out what would give the answers away (see
INSTRUCTOR_ONLY), and writes STUDENT_README.md. The grader stays in.

The handout is built in a temporary directory beside OUT_DIR and renamed
into place, so OUT_DIR is either complete or absent. An OUT_DIR that exists
and is not empty, or that lies inside the repository, is refused (exit 2).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTER = Path(__file__).resolve().parent / "starter"
STARTER_FILES = ("lora/layer.py", "lora/apply.py", "lora/merge.py")
NEVER_COPIED = {".git", ".venv", "venv", "dist", "__pycache__", ".pytest_cache"}  # any path part
INSTRUCTOR_ONLY = (
    "coursework/gallery/",  # the known-wrong implementations, each a patch on the solution
    "coursework/starter/",  # already in place as lora/
    "coursework/handout.py",  # this builder
    "tests/test_lora_layer.py",  # the solution's own tests spell out the formulas
    "tests/test_merge.py",
    "tests/test_apply_lora.py",
    "tests/test_coursework_",  # the grader's tests run the gallery against the solution
    "grade.json",
)

STUDENT_README = """\
# LoRA coursework: start here

1. Read `coursework/ASSIGNMENT.md`: the mathematics, the tasks and the rubric.
2. Set up: `python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt`.
3. Implement the TODOs, in this order: `lora/layer.py` (task 1), `lora/apply.py`
   (task 2), `lora/merge.py` (task 3). Each `raise NotImplementedError` marks one.
4. Grade yourself as often as you like: `python -m coursework.grade` prints one
   line per rubric item with a hint for each failure and writes `grade.json`.
5. When the grader says 100/100, run the experiments (task 4):
   `python train_pretrain.py`, `python train_finetune.py`, `python compare.py`.
6. Answer the analysis questions (task 5) in `ANSWERS.md` and hand in what
   ASSIGNMENT.md lists under "What to hand in".
"""


def is_inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def repository_files(repo: Path) -> list[str]:
    """Relative paths of the files to copy: git's view when git is there, else a walk of the tree."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=repo, capture_output=True, check=True).stdout.decode()
        names = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() or p.is_symlink()]
    return sorted(name for name in names
                  if not NEVER_COPIED & set(Path(name).parts)
                  and not any(name.startswith(prefix) for prefix in INSTRUCTOR_ONLY)
                  and (repo / name).is_file())  # a file deleted but not yet committed is skipped


def build(repo: Path, staging: Path) -> None:
    for name in repository_files(repo):
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)
    for name in STARTER_FILES:
        shutil.copy2(STARTER / name, staging / name)
    (staging / "STUDENT_README.md").write_text(STUDENT_README, encoding="utf-8")
    readme = staging / "README.md"
    if readme.is_file():  # its file map lists only what the handout holds (tests/test_readme.py checks the map)
        readme.write_text(without_instructor_files(readme.read_text(encoding="utf-8")), encoding="utf-8")


def without_instructor_files(readme: str) -> str:
    """The README with the file-map lines of files the handout leaves out removed."""
    kept = [line for line in readme.splitlines(keepends=True)
            if not (line.split() and any(line.split()[0].startswith(prefix) for prefix in INSTRUCTOR_ONLY))]
    return "".join(kept)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coursework.handout",
                                     description="Build the student handout: the repository with LoRA's mathematics left as TODOs.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_dir", help="where to write the handout; must not exist, or be empty, and lie outside the repository")
    parser.add_argument("--repo", default=str(REPO), help="the repository to copy")
    return parser.parse_args(argv)


def refuse(message: str) -> int:
    print(f"handout: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = parse_args(argv)
    repo, out = Path(args.repo).resolve(), Path(args.out_dir).resolve()
    if not (repo / "lora").is_dir():
        return refuse(f"{repo} is not the repository (it has no lora/)")
    if is_inside(out, repo):
        return refuse(f"{out} lies inside the repository {repo}; choose a directory outside it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return refuse(f"{out} exists and is not an empty directory; choose a new one")
    if not out.parent.is_dir():
        return refuse(f"{out.parent} does not exist; create it first")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        build(repo, staging)
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"wrote the handout to {out} ({sum(1 for p in out.rglob('*') if p.is_file())} files); start with STUDENT_README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
