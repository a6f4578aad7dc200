"""`python -m coursework.handout OUT_DIR`: the repository as students receive it, without the answers.

Copies the repository's files (what `git ls-files` lists, tracked files and
new files git does not ignore; without git, a walk of the tree) into OUT_DIR,
and then
* puts the starter versions of lora/layer.py, lora/apply.py and lora/merge.py
  in place of the solution;
* leaves out what would give answers away (INSTRUCTOR_ONLY): the results
  chapters and figures (docs/), the studies that run the analysis questions'
  sweeps by themselves (experiments.py, experiment/studies/), the solution's
  own tests, the gallery, the model answers (coursework/INSTRUCTORS.md), and
  tests that ask for more than the assignment does (tests/test_nf4.py expects
  LoRALinear.merge() to refuse a 4-bit base);
* rewrites the two other places that spell a TODO's code out (HANDOUT_PATCHES:
  lora/multi_adapter.py's A/B initialisation and delta_W, lora/dora.py's
  delta_W) so they call the student's own LoRALinear instead;
* cuts README.md before its results (`student_readme_md`) and writes
  STUDENT_README.md. The grader stays in.

The handout is built in a temporary directory beside OUT_DIR and renamed
into place, so OUT_DIR is either complete or absent. Any problem (OUT_DIR not
empty or inside the repository, a --repo that is not a whole repository copy,
a full disk, a read-only or /proc target, another build into the same place)
ends in one line and exit status 2, with
the temporary directory removed; Ctrl-C likewise, with exit status 130.
"""

import os
import signal
import sys

if __name__ == "__main__":  # as a command only: a test that imports this module keeps its own handler
    # Ctrl-C before main() starts: one line, not a KeyboardInterrupt traceback; main() takes over.
    signal.signal(signal.SIGINT, lambda *_: (print("handout: interrupted during start-up; nothing was written",
                                                   file=sys.stderr, flush=True), os._exit(130)))

import argparse
import fcntl
import re
import shutil
import subprocess
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
    "coursework/INSTRUCTORS.md",  # grading guide and model answers
    "tests/test_lora_layer.py",  # the solution's own tests spell out the formulas
    "tests/test_merge.py",
    "tests/test_apply_lora.py",
    "tests/test_coursework_",  # the grader's tests run the gallery against the solution
    "tests/test_nf4.py",  # expects merge() to refuse an NF4 base, which the assignment does not ask for
    "tests/test_readme.py",  # checks the instructor's README, which the handout cuts
    "tests/test_docs_links.py",  # checks links into docs/ and the README's sections, which the handout leaves out
    "tests/test_experiments.py",  # the studies are left out
    "tests/test_intrinsic_rank.py",
    "experiments.py",  # its rank, targets, pareto and variants studies run Q1-Q3's sweeps by themselves
    "experiment/studies/",
    "docs/",  # results chapters and their figures
    "grade.json",
)

MULTI_INIT = """\
        with torch.no_grad():  # the same start as LoRALinear: A random, B = 0
            if config.init_lora_weights == "gaussian":
                nn.init.normal_(self.lora_A[name].weight, std=1.0 / config.r)
            else:
                nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[name].weight)
"""
# (file, solution text, handout text): each solution text must occur exactly once, or the build stops.
HANDOUT_PATCHES = (
    ("lora/multi_adapter.py", "from lora.errors import LoRAError\n",
     "from lora.errors import LoRAError\nfrom lora.layer import LoRALinear\nfrom types import SimpleNamespace\n"),
    ("lora/multi_adapter.py", MULTI_INIT,
     "        # the same start as LoRALinear: your reset_lora_parameters (task 1b) sets this adapter's A and B\n"
     "        LoRALinear.reset_lora_parameters(SimpleNamespace(lora_A=self.lora_A[name], lora_B=self.lora_B[name], r=config.r),\n"
     "                                         config.init_lora_weights)\n"),
    ("lora/multi_adapter.py", "        return self.scaling[name] * (self.lora_B[name].weight @ self.lora_A[name].weight)\n",
     "        # your delta_weight (task 1c), applied to this adapter's A, B and scaling\n"
     "        one = SimpleNamespace(lora_A=self.lora_A[name], lora_B=self.lora_B[name], scaling=self.scaling[name],\n"
     "                              r=self.lora_A[name].out_features)\n"
     "        return LoRALinear.delta_weight(one)\n"),
    ("lora/dora.py", "        return self.base.weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight)  # (out, in)\n",
     "        return self.base.weight + LoRALinear.delta_weight(self)  # (out, in): your delta_weight (task 1c)\n"),
    ("lora/dora.py", "        self.base.weight.copy_(adapted - self.scaling * (self.lora_B.weight @ self.lora_A.weight))\n",
     "        self.base.weight.copy_(adapted - LoRALinear.delta_weight(self))\n"),
)

STUDENT_README = """\
# LoRA coursework: start here

1. Read `coursework/ASSIGNMENT.md`: the mathematics, the tasks and the rubric.
2. Set up: `python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt`.
3. Implement the TODOs, in this order: `lora/layer.py` (task 1), `lora/apply.py`
   (task 2), `lora/merge.py` (task 3). Each `raise NotImplementedError` marks one.
4. Grade yourself as often as you like: `python -m coursework.grade` prints one
   line per rubric item with a hint for each failure and writes `grade.json`.
   Then run the tests as well: `python -m pytest -q tests/`. They exercise your
   layer through the rest of the project (rsLoRA, DoRA, several adapters,
   saving and loading) and catch slips the scorecard does not show.
5. When the grader says 100/100 and the tests pass, run the experiments (task 4):
   `python train_pretrain.py`, `python train_finetune.py`, `python compare.py`.
   On a shared machine (a lab server, a cluster node) every script already
   lets idle threads sleep (`OMP_WAIT_POLICY=PASSIVE`), which removes most of
   the slowdown of several students' runs sharing the cores. `--threads 1` is
   still there for each training script, but it may change your figures in the
   second or third decimal (ASSIGNMENT.md, task 4).
6. Answer the analysis questions (task 5) in `ANSWERS.md` and hand in what
   ASSIGNMENT.md lists under "What to hand in".
"""

README_CLOSING = """
## What this handout leaves out

The measured results, the studies that produce them (`experiments.py`,
`experiment/studies/`) and the chapters that discuss them (`docs/`) are not
in the handout, although the text above may mention them: measuring them is
your coursework. Start with `STUDENT_README.md`, then
`coursework/ASSIGNMENT.md`.
"""


class HandoutError(Exception):
    """A problem the instructor can fix; the message says what and how."""


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


def student_readme_md(readme: str) -> str:
    """README.md up to the end of its quickstart or its first results heading; no images, links to cut parts made plain text."""
    lines = readme.splitlines(keepends=True)
    headings = [i for i, line in enumerate(lines) if line.startswith("## ")]
    quickstart = [i for i in headings if "quickstart" in lines[i].lower()]
    after = [i for i in headings if quickstart and i > quickstart[0]]
    results = [i for i in headings if "result" in lines[i].lower()]
    cut = min(after[:1] + results[:1] + [len(lines)])  # whichever comes first: the section after the quickstart, or results
    kept = "".join(lines[:cut])
    kept = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", kept)  # images: the figures live in docs/
    kept = re.sub(r"\[([^\]]+)\]\((?:\./)?docs/[^)]*\)", r"\1", kept)  # docs/ is not in the handout
    kept = re.sub(r"\[([^\]]+)\]\(#[^)]*\)", r"\1", kept)  # nor are most of the sections links point to
    return kept.rstrip("\n") + "\n" + README_CLOSING


def apply_patches(staging: Path) -> None:
    for name, old, new in HANDOUT_PATCHES:
        path = staging / name  # copied: make_handout checked REQUIRED in the repository, and git lists these files
        text = path.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise HandoutError(f"{name} no longer holds the solution text the handout replaces ({old.strip()[:60]!r}); "
                               "update HANDOUT_PATCHES in coursework/handout.py")
        path.write_text(text.replace(old, new), encoding="utf-8")


def build(repo: Path, staging: Path) -> None:
    for name in repository_files(repo):
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)
    for name in STARTER_FILES:
        shutil.copy2(STARTER / name, staging / name)
    apply_patches(staging)
    (staging / "STUDENT_README.md").write_text(STUDENT_README, encoding="utf-8")
    readme = staging / "README.md"
    if readme.is_file():
        readme.write_text(student_readme_md(readme.read_text(encoding="utf-8")), encoding="utf-8")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coursework.handout",
                                     description="Build the student handout: the repository with LoRA's mathematics left as TODOs.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_dir", help="where to write the handout; must not exist, or be empty, and lie outside the repository")
    parser.add_argument("--repo", default=str(REPO), help="the repository to copy")
    return parser.parse_args(argv)


def lock_beside(out: Path):
    """An exclusive lock on `.OUT.lock` beside OUT_DIR, so two builds never race for it."""
    lock_path = out.parent / f".{out.name}.lock"
    try:
        handle = open(lock_path, "a")
    except OSError as error:
        raise HandoutError(f"cannot write in {out.parent} ({error.strerror}); choose a writable place for the handout") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise HandoutError(f"another handout build is writing {out}; wait for it to finish or choose another directory") from None
    return handle, lock_path


# What a repository copy must hold for the handout to be the course: the library, its tests, the README students
# start from, and the files the handout edits (a folder with only lora/ in it built a five-file "handout" before).
REQUIRED = ("README.md", "requirements.txt", "lora/__init__.py", "minigpt/__init__.py", "tests/conftest.py",
            *(name for name, _, _ in HANDOUT_PATCHES))


def make_handout(repo: Path, out: Path) -> int:
    if not (repo / "lora").is_dir():
        raise HandoutError(f"{repo} is not the repository (it has no lora/)")
    if missing := [name for name in dict.fromkeys(REQUIRED) if not (repo / name).is_file()]:
        raise HandoutError(f"{repo} is not a whole copy of the repository (it lacks {', '.join(missing[:3])}"
                           f"{', ...' if len(missing) > 3 else ''}); give --repo the repository's root")
    if is_inside(out, repo):
        raise HandoutError(f"{out} lies inside the repository {repo}; choose a directory outside it")
    if not out.parent.is_dir():
        blocking = next((p for p in out.parents if p.exists()), None)  # a file where a folder of the path should be
        if blocking is not None and not blocking.is_dir():
            raise HandoutError(f"{blocking} is a file, so {out} cannot be made there; choose another directory")
        raise HandoutError(f"{out.parent} does not exist; create it first")
    handle, lock_path = lock_beside(out)
    staging = None
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise HandoutError(f"{out} exists and is not an empty directory; choose a new one")
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        build(repo, staging)
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
        staging = None
        return sum(1 for p in out.rglob("*") if p.is_file())
    except OSError as error:
        raise HandoutError(f"could not write the handout to {out} ({error.strerror or error}); "
                           "free some disk space or choose another directory") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        lock_path.unlink(missing_ok=True)
        handle.close()


def main(argv=None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the quiet start-up handler hands over: the build cleans up
    try:
        args = parse_args(argv)
        repo, out = Path(args.repo).resolve(), Path(args.out_dir).resolve()
        count = make_handout(repo, out)
    except HandoutError as error:
        print(f"handout: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("handout: interrupted; nothing was written (the temporary copy is removed)", file=sys.stderr)
        return 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
    print(f"wrote the handout to {out} ({count} files); start with STUDENT_README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
