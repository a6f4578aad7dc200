"""Hostile battery: run the project's entry points as real processes on bad-but-realistic inputs.

The contract checked for every case: the process ends either in a correct success (exit 0) or in
exactly ONE non-empty stderr line naming the problem and the fix, exit status 2, no "Traceback", no
hang; an existing output is left complete (old or new, never mixed); no stray temporaries of the
project's naming (`.NAME.<pid>-<8 hex>.tmp|.old`) or lock files left behind; Ctrl-C ends with exit 130
and one line.

Usage (from the repository root, as root for the tmpfs cases; cases run one at a time):

    OMP_NUM_THREADS=1 .venv/bin/python tools/hostile_battery.py [--only SUBSTRING ...] [--json PATH]

Writes a summary table to stdout and the full records to --json (default dist/hostile_battery.json).
It does not modify the repository: every output goes to a scratch directory under /tmp.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TIMEOUT = 120
TINY_MODEL = ["--block-size", "16", "--n-layer", "2", "--n-head", "2", "--n-embd", "16"]
TINY = ["--steps", "2", "--eval-interval", "2", "--batch-size", "4", "--no-progress", "--threads", "1"]
TEMP_RE = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.(tmp|old)$")
LOCK_RE = re.compile(r"^\..+\.lock$")
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
           PYTHONDONTWRITEBYTECODE="1")

W: Path  # scratch directory, set in main()
RESULTS: list[dict] = []
CASES: list = []


def case(fn):
    CASES.append(fn)
    return fn


# ---------------------------------------------------------------- process running and checks

def fsize_limit(limit=20000):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def mem_limit(limit=8 << 30):
    def preexec():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return preexec


def run(cmd, timeout=TIMEOUT, preexec=None, sigint_after=None, cwd=ROOT, env=None):
    """Run one command as a real process; return a record of what happened."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=preexec, start_new_session=True)
    timed_out = False
    try:
        if sigint_after is not None:
            try:
                out, err = proc.communicate(timeout=sigint_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=timeout)
        else:
            out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return finish(cmd, proc.returncode, out, err, time.monotonic() - start, timed_out)


def finish(cmd, rc, out, err, wall, timed_out):
    err_text = err.decode("utf-8", "replace")
    lines = [line for line in err_text.splitlines() if line.strip()]
    tb = "Traceback" in err_text or "Traceback" in out.decode("utf-8", "replace")
    last = lines[-1] if lines else ""
    return {"command": " ".join(shlex_quote(c) for c in cmd), "rc": rc, "stderr_lines": len(lines),
            "stderr_first": (lines[0] if lines else "")[:200], "stderr_last": last[:300], "traceback": tb,
            "wall_s": round(wall, 2), "timed_out": timed_out, "stdout_tail": out.decode("utf-8", "replace")[-300:]}


def shlex_quote(s):
    import shlex
    s = str(s)
    return s if len(s) > 120 else shlex.quote(s)


def contract(r, sigint=False, must_fail=False, may_succeed=True):
    """Verdict from exit status and stderr alone. Returns a reason string for FAIL, or None."""
    if r["timed_out"]:
        return "hang: killed after timeout"
    if r["traceback"]:
        return f"Traceback on output (rc {r['rc']}): {r['stderr_last']}"
    if r["rc"] == 0:
        if must_fail or not may_succeed:
            return "exit 0 where the run cannot have succeeded"
        return None
    if sigint and r["rc"] == 130:
        return None if r["stderr_lines"] == 1 else f"exit 130 with {r['stderr_lines']} stderr lines"
    if r["rc"] == 2:
        return None if r["stderr_lines"] == 1 else f"exit 2 with {r['stderr_lines']} stderr lines (contract: exactly 1)"
    return f"exit {r['rc']} (contract: 0 or 2{' or 130' if sigint else ''})"


def snapshot(path: Path):
    """Content hash of a file or directory tree (None if absent)."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    snap = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            snap[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


def strays(*dirs):
    """Project temporaries and lock files left in the given directories (non-recursive)."""
    found = []
    for d in dirs:
        d = Path(d)
        if d.is_dir():
            try:
                found += [str(d / e.name) for e in os.scandir(d) if TEMP_RE.match(e.name) or LOCK_RE.match(e.name)]
            except OSError:
                pass
    return found


def record(name, r, reason=None, post=None, note=None):
    r = dict(r)
    r["name"] = name
    r["post"] = post or {}
    r["verdict"] = "FAIL" if reason else "OK"
    r["reason"] = reason or ""
    if note:
        r["note"] = note
    RESULTS.append(r)
    flag = r["verdict"]
    print(f"[{flag:4}] {name:42} rc={r['rc']!s:>4} lines={r['stderr_lines']} {r['wall_s']:6.1f}s "
          f"{(reason or r['stderr_first'])[:110]}", flush=True)
    return r


def judge(name, r, out=None, old=None, parents=(), sigint=False, must_fail=False, complete=None, note=None):
    """Apply the contract plus post-conditions on `out`: old intact on failure, complete on success, no strays."""
    reason = contract(r, sigint=sigint, must_fail=must_fail)
    post = {}
    if out is not None:
        now = snapshot(out)
        if r["rc"] != 0 and old is not None:
            post["old_intact"] = now == old
            if not post["old_intact"]:
                post["changed"] = sorted(k for k in set(now or {}) | set(old) if (now or {}).get(k) != old.get(k))
            if not post["old_intact"] and not reason:
                reason = "old output changed by a failed run"
        if r["rc"] == 0 and complete is not None:
            missing = [f for f in complete if not (Path(out) / f).exists()]
            post["complete"] = not missing
            if missing and not reason:
                reason = f"exit 0 but output lacks {missing}"
        ps = list(parents) or [Path(out).parent]
        left = strays(*ps, *([out] if Path(out).is_dir() else []))
        post["strays"] = left
        if left and not reason:
            reason = f"stray temporaries/locks left: {left}"
    return record(name, r, reason, post, note)


@contextmanager
def tmpfs(size="300k", leave=None):
    d = Path(tempfile.mkdtemp(prefix="tmpfs-", dir=W))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], check=True)
    try:
        if leave is not None:
            fill(d, leave)
        yield d
    finally:
        if subprocess.run(["umount", str(d)]).returncode != 0:
            subprocess.run(["umount", "-l", str(d)])
        shutil.rmtree(d, ignore_errors=True)


def fill(d: Path, leave: int):
    """Grow d/filler until only about `leave` bytes are free."""
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    filler = Path(d) / "filler"
    have = filler.stat().st_size if filler.exists() else 0
    want = max(0, have + free - leave)
    with open(filler, "ab") as f:
        f.truncate(0)
        f.write(b"\0" * want)


def copytree(src, dst):
    shutil.copytree(src, dst, dirs_exist_ok=False)
    return Path(dst)


# ---------------------------------------------------------------- fixtures

FIX: dict = {}


def setup():
    """Tiny base, LoRA results, full results with two adapters, a PEFT copy, an adapter round trip."""
    def must(cmd):
        r = run(cmd, timeout=300)
        if r["rc"] != 0:
            sys.exit(f"setup failed: {r['command']}: {r['stderr_last']}")
    base = W / "fx" / "base"
    must([PY, "train_pretrain.py", "--out", str(base), *TINY, *TINY_MODEL])
    res = W / "fx" / "res"
    must([PY, "train_finetune.py", "--method", "lora", "--pretrained", str(base), "--out", str(res), *TINY])
    resall = W / "fx" / "resall"
    must([PY, "train_finetune.py", "--method", "all", "--pretrained", str(base), "--out", str(resall), *TINY])
    must([PY, "train_finetune.py", "--method", "lora", "--adapter-name", "sport", "--data", "data/sport.txt",
          "--pretrained", str(base), "--out", str(resall), *TINY])
    peft = W / "fx" / "peft"
    must([PY, "peft_convert.py", "to-peft", str(res / "lora_adapter"), str(peft)])
    exp = W / "fx" / "exp"
    must([PY, "experiments.py", "seeds", *EXP_ARGS(base), "--out", str(exp)])
    grade = W / "fx" / "grade.json"
    must([PY, "-m", "coursework.grade", str(ROOT), "--out", str(grade)])
    FIX.update(base=base, res=res, resall=resall, peft=peft, exp=exp, grade=grade)


def EXP_ARGS(base):
    return ["--seeds", "1", "--methods", "lora", "--steps", "2", "--batch-size", "4", "--pretrained", str(base),
            "--no-progress", "--threads", "1"]


# Writers: name -> (function(out) -> command, expected files in a complete output, prepare(out) for an old copy)
def writers():
    base, res, resall, peft = FIX["base"], FIX["res"], FIX["resall"], FIX["peft"]
    return {
        "pretrain": (lambda o: [PY, "train_pretrain.py", "--out", str(o), *TINY, *TINY_MODEL],
                     ["model.pt", "config.json", "tokenizer.json", "run.json"], 40_000),
        "finetune": (lambda o: [PY, "train_finetune.py", "--method", "lora", "--pretrained", str(base), "--out", str(o), *TINY],
                     ["metrics.json", "lora_adapter/lora_weights.pt", "lora_merged/model.pt"], 40_000),
        "experiments": (lambda o: [PY, "experiments.py", "seeds", *EXP_ARGS(base), "--out", str(o)],
                        ["seeds/results.json", "seeds/results.md"], 3_000),
        "to_peft": (lambda o: [PY, "peft_convert.py", "to-peft", str(res / "lora_adapter"), str(o)],
                    ["adapter_config.json", "adapter_model.safetensors"], 3_000),
        "from_peft": (lambda o: [PY, "peft_convert.py", "from-peft", str(peft), str(o), "--pretrained", str(base)],
                      ["lora_config.json", "lora_weights.pt"], 3_000),
        "grade": (lambda o: [PY, "-m", "coursework.grade", str(ROOT), "--out", str(o)], [], 500),
        "compare_adapters": (lambda o: [PY, "compare_adapters.py", "--pretrained", str(base), "--results", str(resall),
                                        "--repeats", "1", "--out", str(o), "--no-progress", "--threads", "1"],
                             ["adapters_comparison.json", "adapters_comparison.md"], 1_000),
    }


def fresh_results_copy(dst):
    """A copy of the full results without compare.py's outputs."""
    copytree(FIX["resall"], dst)
    for p in Path(dst).iterdir():
        if p.name.startswith("comparison") or p.name in ("forgetting_vs_learning.png", "inference_latency.png", "storage.png"):
            p.unlink()
    return Path(dst)


COMPARE = lambda results: [PY, "compare.py", "--pretrained", str(FIX["base"]), "--results", str(results),
                           "--latency-tokens", "2", "--latency-repeats", "1", "--no-progress", "--threads", "1"]


# ---------------------------------------------------------------- 1, 2: full disk and file-size limit

def _writer_cases(mode):
    for wname, (cmd, complete, leave) in writers().items():
        for with_old in (False, True):
            name = f"{mode}_{wname}{'_old' if with_old else ''}"
            if not selected(name):
                continue
            if mode == "fulldisk":
                ctx = tmpfs("300k" if not with_old else "1m")
                pre = None
            else:
                d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=W))
                ctx = _nullctx(d)
                pre = fsize_limit()
            with ctx as d:
                out = d / ("out.json" if wname == "grade" else "out")
                old = None
                if with_old:
                    r0 = run(cmd(out))
                    if r0["rc"] != 0:
                        record(name, r0, f"could not write the old version first: {r0['stderr_last']}")
                        continue
                    old = snapshot(out)
                    if mode == "fulldisk":
                        fill(d, leave)
                elif mode == "fulldisk":
                    fill(d, leave)
                r = run(cmd(out), preexec=pre)
                judge(name, r, out=out, old=old, complete=complete)
    # compare.py writes into --results; make_corpora.py writes beside itself; the handout must not exist
    for with_old in (False, True):
        name = f"{mode}_compare{'_old' if with_old else ''}"
        if selected(name):
            ctx = tmpfs("2m") if mode == "fulldisk" else _nullctx(Path(tempfile.mkdtemp(prefix=name, dir=W)))
            with ctx as d:
                results = fresh_results_copy(d / "res")
                if with_old:
                    r0 = run(COMPARE(results))
                    if r0["rc"] != 0:
                        record(name, r0, f"could not write the old version: {r0['stderr_last']}")
                        continue
                old = {k: v for k, v in snapshot(results).items()}
                if mode == "fulldisk":
                    fill(d, 30_000)
                r = run(COMPARE(results), preexec=None if mode == "fulldisk" else fsize_limit())
                judge(name, r, out=results, old=old, complete=["comparison.json", "comparison.md"])
        name = f"{mode}_make_corpora{'_old' if with_old else ''}"
        if selected(name):
            ctx = tmpfs("300k" if not with_old else "1m") if mode == "fulldisk" else _nullctx(Path(tempfile.mkdtemp(prefix=name, dir=W)))
            with ctx as d:
                shutil.copy(ROOT / "data" / "make_corpora.py", d / "make_corpora.py")
                if with_old:
                    r0 = run([PY, str(d / "make_corpora.py")], cwd=d)
                    if r0["rc"] != 0:
                        record(name, r0, f"could not write the old version: {r0['stderr_last']}")
                        continue
                    if mode == "fulldisk":
                        fill(d, 50_000)
                old = snapshot(d)
                old.pop("filler", None)
                r = run([PY, str(d / "make_corpora.py")], cwd=d, preexec=None if mode == "fulldisk" else fsize_limit())
                now = snapshot(d)
                now.pop("filler", None)
                reason = contract(r)
                post = {"strays": strays(d)}
                if r["rc"] != 0 and with_old:
                    post["old_intact"] = now == old
                    if now != old and not reason:
                        reason = "old corpora changed by a failed run"
                if r["rc"] != 0 and not with_old:
                    partial = [k for k in now if k not in ("make_corpora.py",)]
                    post["partial_files"] = partial
                    if partial and not reason:
                        reason = f"failed run left files behind: {partial}"
                if post["strays"] and not reason:
                    reason = f"stray temporaries: {post['strays']}"
                record(name, r, reason, post)
    name = f"{mode}_handout"
    if selected(name):
        ctx = tmpfs("300k") if mode == "fulldisk" else _nullctx(Path(tempfile.mkdtemp(prefix=name, dir=W)))
        with ctx as d:
            out = d / "handout"
            r = run([PY, "-m", "coursework.handout", str(out)], preexec=None if mode == "fulldisk" else fsize_limit())
            reason = contract(r)
            post = {"out_exists": out.exists(), "strays": strays(d)}
            if r["rc"] != 0 and out.exists() and any(out.iterdir()) and not reason:
                reason = "failed run left a half-written handout (a rerun into it is refused: not empty)"
            if r["rc"] != 0 and not reason:
                r2 = run([PY, "-m", "coursework.handout", str(out)], preexec=None if mode == "fulldisk" else fsize_limit())
                post["rerun_first_line"] = r2["stderr_first"]
            record(name, r, reason, post)


@contextmanager
def _nullctx(d):
    yield d


@case
def fulldisk():
    _writer_cases("fulldisk")


@case
def fsize():
    _writer_cases("fsize")


# ---------------------------------------------------------------- 3: read-only, /proc, file, symlink targets

@case
def targets():
    ws = writers()
    for wname in ("pretrain", "finetune", "experiments", "to_peft", "grade"):
        cmd, complete, _ = ws[wname]
        # read-only directory (root ignores the mode bits, so success is a correct outcome)
        name = f"readonly_dir_{wname}"
        if selected(name):
            d = Path(tempfile.mkdtemp(prefix=name, dir=W))
            os.chmod(d, 0o555)
            out = d / ("g.json" if wname == "grade" else "out")
            judge(name, run(cmd(out)), out=out, complete=complete)
            os.chmod(d, 0o755)
        name = f"proc_target_{wname}"
        if selected(name):
            judge(name, run(cmd(Path("/proc/x"))), must_fail=True)
        name = f"out_is_file_{wname}"
        if selected(name):
            d = Path(tempfile.mkdtemp(prefix=name, dir=W))
            if wname == "grade":  # grade's --out is a file: give it a directory
                out = d / "g.json"
                out.mkdir()
                (out / "keep.txt").write_text("keep me\n")
            else:
                out = d / "out"
                out.write_text("precious user file\n")
            old = snapshot(out)
            judge(name, run(cmd(out)), out=out, old=old, must_fail=True)
        if wname == "grade":
            continue
        name = f"symlink_dir_{wname}"
        if selected(name):
            d = Path(tempfile.mkdtemp(prefix=name, dir=W))
            real = d / "real"
            real.mkdir()
            link = d / "link"
            link.symlink_to(real, target_is_directory=True)
            r = run(cmd(link))
            post_link = os.path.islink(link)
            rec = judge(name, r, out=link, complete=complete, parents=[d])
            rec["post"]["symlink_kept"] = post_link
            rec["post"]["target_filled"] = bool(list(real.iterdir()))
            if r["rc"] == 0 and (not post_link or not list(real.iterdir())) and rec["verdict"] == "OK":
                rec["verdict"], rec["reason"] = "FAIL", "symlinked --out replaced by a real directory (or target left empty)"
                print(f"  -> FAIL: {rec['reason']}")
    # handout and compare.py through a symlink
    name = "symlink_dir_handout"
    if selected(name):
        d = Path(tempfile.mkdtemp(prefix=name, dir=W))
        (d / "real").mkdir()
        (d / "link").symlink_to(d / "real", target_is_directory=True)
        r = run([PY, "-m", "coursework.handout", str(d / "link")])
        rec = judge(name, r)
        rec["post"]["symlink_kept"] = os.path.islink(d / "link")
        if r["rc"] == 0 and not os.path.islink(d / "link") and rec["verdict"] == "OK":
            rec["verdict"], rec["reason"] = "FAIL", "symlinked out_dir replaced by a real directory"
    name = "symlink_dir_compare"
    if selected(name):
        d = Path(tempfile.mkdtemp(prefix=name, dir=W))
        real = fresh_results_copy(d / "real")
        (d / "link").symlink_to(real, target_is_directory=True)
        r = run(COMPARE(d / "link"))
        rec = judge(name, r, out=d / "link", parents=[d], complete=["comparison.json"])
        rec["post"]["symlink_kept"] = os.path.islink(d / "link")
        if not os.path.islink(d / "link") and rec["verdict"] == "OK":
            rec["verdict"], rec["reason"] = "FAIL", "symlinked --results replaced by a real directory"


# ---------------------------------------------------------------- 4: two concurrent writers

@case
def concurrent():
    ws = writers()
    items = [(k, ws[k][0], ws[k][1]) for k in ("pretrain", "finetune", "experiments", "to_peft", "grade")]
    items.append(("compare", None, ["comparison.json"]))
    for wname, cmd, complete in items:
        name = f"concurrent_{wname}"
        if not selected(name):
            continue
        d = Path(tempfile.mkdtemp(prefix=name, dir=W))
        if wname == "compare":
            out = fresh_results_copy(d / "res")
            c = COMPARE(out)
        else:
            out = d / ("g.json" if wname == "grade" else "out")
            c = cmd(out)
        start = time.monotonic()
        procs = []
        for _ in range(2):
            procs.append(subprocess.Popen(c, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          start_new_session=True))
            time.sleep(0.3)
        recs = []
        for p in procs:
            try:
                o, e = p.communicate(timeout=TIMEOUT)
                recs.append(finish(c, p.returncode, o, e, time.monotonic() - start, False))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                o, e = p.communicate()
                recs.append(finish(c, p.returncode, o, e, time.monotonic() - start, True))
        rcs = sorted(r["rc"] for r in recs)
        reason = None
        for r in recs:
            reason = reason or contract(r)
        refused = [r for r in recs if r["rc"] != 0]
        if not reason and refused:
            line = refused[0]["stderr_first"]
            if not re.search(r"lock|pid|running|another", line, re.I):
                reason = f"second run refused without naming the lock holder: {line}"
        missing = [f for f in complete if not (out / f).exists()] if complete else ([] if out.exists() else ["out"])
        if not reason and 0 in rcs and missing:
            reason = f"no complete output: lacks {missing}"
        left = strays(d, *([out] if out.is_dir() else []))
        if not reason and left:
            reason = f"stray temporaries/locks: {left}"
        merged = dict(recs[1] if refused == [] else refused[0])
        merged["rc"] = f"{recs[0]['rc']}/{recs[1]['rc']}"
        merged["both"] = recs
        record(name, merged, reason, {"strays": left, "missing": missing},
               note="both exit 0 (runs serialized or overlapped)" if rcs == [0, 0] else None)


# ---------------------------------------------------------------- 5: Ctrl-C

@case
def sigint():
    ws = writers()
    for wname in ("pretrain", "finetune", "to_peft", "grade", "experiments"):
        cmd, complete, _ = ws[wname]
        for t in (0.5, 2.0, 4.0):
            name = f"sigint_{wname}_{t}s"
            if not selected(name):
                continue
            d = Path(tempfile.mkdtemp(prefix=name, dir=W))
            out = d / ("g.json" if wname == "grade" else "out")
            r0 = run(cmd(out))  # an old complete version first
            old = snapshot(out)
            r = run(cmd(out), sigint_after=t)
            reason = contract(r, sigint=True)
            if r["rc"] == 0 and r["wall_s"] > t + 1.5 and not reason:
                reason = f"Ctrl-C at {t} s ignored: ran on to exit 0 at {r['wall_s']} s (contract: exit 130, one line)"
            post = {}
            now = snapshot(out)
            post["old_or_new"] = now == old or (all((out / f).exists() for f in complete) if out.is_dir() else now is not None)
            if not post["old_or_new"] and not reason:
                reason = "output neither the old version nor a complete new one"
            left = strays(d, *([out] if out.is_dir() else []))
            post["strays_after_interrupt"] = left
            if left:  # the contract allows them until the next run
                r2 = run(cmd(out))
                post["strays_after_next_run"] = strays(d, *([out] if out.is_dir() else []))
                post["next_run_rc"] = r2["rc"]
                if (post["strays_after_next_run"] or r2["rc"] != 0) and not reason:
                    reason = f"after the next run (rc {r2['rc']}): strays {post['strays_after_next_run']} {r2['stderr_first']}"
            if r0["rc"] != 0:
                reason = reason or f"old version could not be written: {r0['stderr_first']}"
            record(name, r, reason, post)


# ---------------------------------------------------------------- 6: deep JSON, huge sparse corpus

DEEP = "[" * 100000


@case
def deep_json():
    base, res, resall = FIX["base"], FIX["res"], FIX["resall"]
    gen = lambda pre, extra=(): [PY, "generate.py", "--pretrained", str(pre), "--results", str(W / "none"),
                                 "--prompt", "the cow", "--max-new-tokens", "2", "--no-progress", "--threads", "1", *extra]
    for fname in ("config.json", "tokenizer.json", "run.json"):
        name = f"deep_{fname}_generate"
        if selected(name):
            d = copytree(base, W / f"{name}")
            (d / fname).write_text(DEEP)
            judge(name, run(gen(d)))
        name = f"deep_{fname}_finetune"
        if selected(name):
            d = copytree(base, W / f"{name}")
            (d / fname).write_text(DEEP)
            out = W / f"{name}_out"
            judge(name, run([PY, "train_finetune.py", "--method", "lora", "--pretrained", str(d), "--out", str(out), *TINY]),
                  out=out)
    name = "deep_metrics_compare"
    if selected(name):
        d = fresh_results_copy(W / name)
        (d / "metrics.json").write_text(DEEP)
        judge(name, run(COMPARE(d)))
    name = "deep_metrics_generate"
    if selected(name):
        d = copytree(res, W / name)
        (d / "metrics.json").write_text(DEEP)
        judge(name, run([PY, "generate.py", "--pretrained", str(base), "--results", str(d), "--prompt", "the cow",
                         "--max-new-tokens", "2", "--no-progress", "--threads", "1"]))
    probes = W / "deep_probes.json"
    probes.write_text(DEEP)
    name = "deep_probes_pretrain"
    if selected(name):
        judge(name, run([PY, "train_pretrain.py", "--probes", str(probes), "--out", str(W / name), *TINY, *TINY_MODEL]))
    name = "deep_probes_finetune"
    if selected(name):
        judge(name, run([PY, "train_finetune.py", "--method", "lora", "--probes", str(probes), "--pretrained", str(base),
                         "--out", str(W / name), *TINY]))
    name = "deep_lora_config_generate"
    if selected(name):
        a = copytree(res / "lora_adapter", W / name)
        (a / "lora_config.json").write_text(DEEP)
        judge(name, run(gen(base, ["--adapter", f"x={a}"])))
    name = "deep_lora_config_to_peft"
    if selected(name):
        a = copytree(res / "lora_adapter", W / name)
        (a / "lora_config.json").write_text(DEEP)
        judge(name, run([PY, "peft_convert.py", "to-peft", str(a), str(W / f"{name}_out")]))
    name = "deep_adapter_config_from_peft"
    if selected(name):
        a = copytree(FIX["peft"], W / name)
        (a / "adapter_config.json").write_text(DEEP)
        judge(name, run([PY, "peft_convert.py", "from-peft", str(a), str(W / f"{name}_out"), "--pretrained", str(base)]))
    name = "deep_study_cache"
    if selected(name):
        e = copytree(FIX["exp"], W / name)
        cache = list((e / "seeds" / "runs").glob("*.json"))
        for c in cache:
            c.write_text(DEEP)
        r = run([PY, "experiments.py", "seeds", *EXP_ARGS(base), "--out", str(e)])
        judge(name, r, note=f"replaced {len(cache)} cached run file(s) in seeds/runs/")
    name = "deep_grade_out_json"
    if selected(name):  # a grade.json to be overwritten that is deep JSON
        g = W / f"{name}.json"
        g.write_text(DEEP)
        judge(name, run([PY, "-m", "coursework.grade", str(ROOT), "--out", str(g)]))
    big = W / "sparse300M.txt"
    subprocess.run(["truncate", "-s", "300M", str(big)], check=True)
    for name, cmd in [
        ("sparse_corpus_pretrain", [PY, "train_pretrain.py", "--corpus", str(big), "--out", str(W / "sp_pre"), *TINY, *TINY_MODEL]),
        ("sparse_data_finetune", [PY, "train_finetune.py", "--method", "lora", "--data", str(big), "--pretrained", str(base),
                                  "--out", str(W / "sp_ft"), *TINY]),
        ("sparse_data_compare", [*COMPARE(resall), "--data", str(big)]),
        ("sparse_probes_pretrain", [PY, "train_pretrain.py", "--probes", str(big), "--out", str(W / "sp_pr"), *TINY, *TINY_MODEL]),
        ("sparse_text_finetune_hf", [PY, "finetune_hf.py", "--model", str(base), "--text", str(big), "--out", str(W / "sp_hf"),
                                     "--no-progress", "--threads", "1"]),
    ]:
        if selected(name):
            judge(name, run(cmd, preexec=mem_limit(12 << 30)))
    big.unlink()


# ---------------------------------------------------------------- 7: bounds on work

@case
def bounds():
    base, resall = FIX["base"], FIX["resall"]
    gen = [PY, "generate.py", "--pretrained", str(base), "--results", str(resall), "--prompt", "the cow",
           "--no-progress", "--threads", "1"]
    pre = lambda name, *extra: [PY, "train_pretrain.py", "--out", str(W / name), *TINY, *TINY_MODEL, *extra]
    cases = [
        ("gen_max_new_tokens_1e12", gen + ["--max-new-tokens", "1000000000000"], {}),
        ("compare_latency_tokens_1e9", COMPARE(None), {"compare": True}),
        ("pretrain_threads_1e6", pre("thr") + ["--threads", "1000000"], {}),
        ("gen_threads_1e6", gen + ["--threads", "1000000", "--max-new-tokens", "2"], {}),
        ("pretrain_batch_2e6", pre("bs") + ["--batch-size", "2000000"], {}),
        ("finetune_batch_2e6", [PY, "train_finetune.py", "--method", "lora", "--pretrained", str(base), "--out",
                                str(W / "ftbs"), *TINY, "--batch-size", "2000000"], {}),
        ("pretrain_nembd_1e5_nlayer_100", pre("big") + ["--n-embd", "100000", "--n-layer", "100"], {}),
        ("gen_temperature_1e-320", gen + ["--temperature", "1e-320", "--max-new-tokens", "3"], {}),
        ("gen_mix_1e300", gen + ["--mix", "cooking=1e300", "--max-new-tokens", "3"], {}),
        ("gen_mix_space_separated", gen + ["--mix", "cooking=0.5 sport=0.5", "--max-new-tokens", "3"], {}),
        ("gen_mix_nan", gen + ["--mix", "cooking=nan,sport=0.5", "--max-new-tokens", "3"], {}),
        ("finetune_adapter_name_300", [PY, "train_finetune.py", "--method", "lora", "--adapter-name", "a" * 300,
                                       "--pretrained", str(base), "--out", str(W / "an300"), *TINY], {"must_fail": True}),
        ("compare_adapters_repeats_1e9", [PY, "compare_adapters.py", "--pretrained", str(base), "--results", str(resall),
                                          "--repeats", "1000000000", "--out", str(W / "carep"), "--no-progress", "--threads", "1"], {}),
        ("finetune_hf_missing_model", [PY, "finetune_hf.py", "--model", str(W / "no_such_model"), "--out", str(W / "hf1"),
                                       "--no-progress", "--threads", "1"], {"must_fail": True}),
        ("finetune_hf_hub_name_offline", [PY, "finetune_hf.py", "--model", "nobody/does-not-exist-xyz", "--out", str(W / "hf2"),
                                          "--no-progress", "--threads", "1"], {"must_fail": True}),
        ("finetune_hf_minigpt_dir", [PY, "finetune_hf.py", "--model", str(base), "--out", str(W / "hf3"),
                                     "--no-progress", "--threads", "1"], {"must_fail": True}),
        ("finetune_hf_missing_text", [PY, "finetune_hf.py", "--model", str(base), "--text", str(W / "nope.txt"),
                                      "--out", str(W / "hf4"), "--no-progress", "--threads", "1"], {"must_fail": True}),
    ]
    for name, cmd, opts in cases:
        if not selected(name):
            continue
        if opts.get("compare"):
            d = fresh_results_copy(W / name)
            cmd = [PY, "compare.py", "--pretrained", str(base), "--results", str(d), "--latency-tokens", "1000000000",
                   "--latency-repeats", "1", "--no-progress", "--threads", "1"]
        r = run(cmd, preexec=mem_limit(12 << 30))
        judge(name, r, must_fail=opts.get("must_fail", False))


# ---------------------------------------------------------------- 8: PEFT tampering

@case
def peft_tamper():
    base = FIX["base"]

    def tampered(name, edit):
        d = copytree(FIX["peft"], W / name)
        cfg = json.loads((d / "adapter_config.json").read_text())
        edit(d, cfg)
        if cfg is not None:
            (d / "adapter_config.json").write_text(json.dumps(cfg))
        return d

    def nondict(d, cfg):
        (d / "adapter_model.safetensors").unlink()
        helper = "import torch,sys; torch.save([torch.zeros(3)], sys.argv[1])"
        subprocess.run([PY, "-c", helper, str(d / "adapter_model.bin")], check=True, env=ENV)

    def garbage_safetensors(d, cfg):
        (d / "adapter_model.safetensors").write_bytes(b"\xff" * 64)

    def rank_off(d, cfg):
        cfg["r"] = cfg["r"] + 1

    def target_string(d, cfg):
        cfg["target_modules"] = ",".join(cfg["target_modules"]) if isinstance(cfg["target_modules"], list) else cfg["target_modules"]

    def target_regex_string(d, cfg):
        cfg["target_modules"] = "q_proj"

    def unknown(d, cfg):
        cfg["target_modules"] = ["no_such_proj"]

    def rank_zero(d, cfg):
        cfg["r"] = 0

    def alpha_nan(d, cfg):
        cfg["lora_alpha"] = float("nan")

    for name, edit in [("peft_rank_mismatch", rank_off), ("peft_target_modules_string", target_string),
                       ("peft_target_modules_single_string", target_regex_string), ("peft_unknown_targets", unknown),
                       ("peft_nondict_tensor_file", nondict), ("peft_garbage_safetensors", garbage_safetensors),
                       ("peft_rank_zero", rank_zero), ("peft_alpha_nan", alpha_nan)]:
        if not selected(name):
            continue
        d = tampered(name, edit)
        out = W / f"{name}_out"
        r = run([PY, "peft_convert.py", "from-peft", str(d), str(out), "--pretrained", str(base)])
        note = None
        if r["rc"] == 0 and out.is_dir():  # did it write something that then loads and generates?
            r2 = run([PY, "generate.py", "--pretrained", str(base), "--adapter", f"x={out}", "--prompt", "the cow",
                      "--max-new-tokens", "2", "--no-progress", "--threads", "1"])
            note = f"converted adapter then served by generate.py: rc {r2['rc']} {r2['stderr_first'] or r2['stdout_tail'][-80:]}"
        rec = judge(name, r, out=out, note=note)
        if note and "rc 0" not in note and rec["verdict"] == "OK":
            rec["verdict"], rec["reason"] = "FAIL", f"from-peft exit 0 but its output does not load: {note}"


# ---------------------------------------------------------------- 9: damaged checkpoints, stray temporaries

@case
def checkpoints():
    base = FIX["base"]
    gen = lambda d: [PY, "generate.py", "--pretrained", str(d), "--results", str(W / "none"), "--prompt", "the cow",
                     "--max-new-tokens", "2", "--no-progress", "--threads", "1"]
    name = "model_pt_flipped_bytes"
    if selected(name):
        d = copytree(base, W / name)
        flip_bytes(d / "model.pt", middle=True)
        judge(name, run(gen(d)))
        name2 = name + "_finetune"
        if selected(name2):
            judge(name2, run([PY, "train_finetune.py", "--method", "lora", "--pretrained", str(d), "--out", str(W / name2), *TINY]))
    name = "model_pt_flipped_header"
    if selected(name):
        d = copytree(base, W / name)
        flip_bytes(d / "model.pt", middle=False)
        judge(name, run(gen(d)))
    name = "model_pt_int64"
    if selected(name):
        d = copytree(base, W / name)
        helper = ("import torch,sys; s=torch.load(sys.argv[1],weights_only=True); "
                  "torch.save({k:v.to(torch.int64) for k,v in s.items()}, sys.argv[1])")
        subprocess.run([PY, "-c", helper, str(d / "model.pt")], check=True, env=ENV)
        judge(name, run(gen(d)))
        name2 = name + "_finetune"
        if selected(name2):
            judge(name2, run([PY, "train_finetune.py", "--method", "lora", "--pretrained", str(d), "--out", str(W / name2), *TINY]))
    name = "model_pt_truncated"
    if selected(name):
        d = copytree(base, W / name)
        with open(d / "model.pt", "r+b") as f:
            f.truncate(1000)
        judge(name, run(gen(d)))
    name = "stray_tmp_beside_results"
    if selected(name):
        parent = Path(tempfile.mkdtemp(prefix=name, dir=W))
        results = copytree(FIX["res"], parent / "results")
        dead = 4_000_000 - 7  # above the usual pid_max: certainly not running
        stray = parent / f".results.{dead}-deadbeef.tmp"
        stray.mkdir()
        (stray / "metrics.json").write_text('{"half": ')
        r = run([PY, "train_finetune.py", "--method", "lora", "--pretrained", str(base), "--out", str(results), *TINY])
        rec = judge(name, r, out=results, complete=["metrics.json", "lora_adapter/lora_weights.pt"], parents=[parent])
        if r["rc"] != 0 and rec["verdict"] == "OK":
            rec["verdict"], rec["reason"] = "FAIL", "did not proceed past a dead run's stray temporary"
    name = "stray_old_beside_results_missing"
    if selected(name):  # killed between the two renames: the old complete copy must come back
        parent = Path(tempfile.mkdtemp(prefix=name, dir=W))
        old = copytree(FIX["res"], parent / f".results.{4_000_000 - 7}-deadbeef.old")
        r = run([PY, "generate.py", "--pretrained", str(base), "--results", str(parent / "results"), "--prompt", "the cow",
                 "--max-new-tokens", "2", "--no-progress", "--threads", "1"])
        rec = judge(name, r, parents=[parent])
        rec["post"]["old_still_there"] = old.exists()


# ---------------------------------------------------------------- 10: grade arguments

@case
def grade_args():
    for name, extra in [("grade_timeout_nan", ["--timeout", "nan"]), ("grade_timeout_neg", ["--timeout", "-1"]),
                        ("grade_timeout_inf", ["--timeout", "inf"]), ("grade_workers_0", ["--workers", "0"])]:
        if selected(name):
            judge(name, run([PY, "-m", "coursework.grade", str(ROOT), "--out", str(W / f"{name}.json"), *extra]),
                  must_fail=name != "grade_timeout_inf")
    name = "grade_missing_path"
    if selected(name):
        judge(name, run([PY, "-m", "coursework.grade", str(W / "no_such_repo"), "--out", str(W / "gm.json")]), must_fail=True)
    name = "grade_missing_submissions"
    if selected(name):
        judge(name, run([PY, "-m", "coursework.grade", "--submissions", str(W / "no_such_dir")]), must_fail=True)
    name = "handout_inside_repo"
    if selected(name):
        judge(name, run([PY, "-m", "coursework.handout", str(ROOT / "dist" / "handout_test")]), must_fail=True)
    name = "handout_nonempty"
    if selected(name):
        d = Path(tempfile.mkdtemp(prefix=name, dir=W))
        (d / "keep.txt").write_text("x")
        old = snapshot(d)
        judge(name, run([PY, "-m", "coursework.handout", str(d)]), out=d, old=old, must_fail=True)


# ---------------------------------------------------------------- main

ONLY: list[str] = []


def selected(name):
    return not ONLY or any(o in name for o in ONLY)


def flip_bytes(path: Path, middle: bool, count: int = 64) -> None:
    """Invert `count` bytes of a file, in its middle or at its start (a damaged checkpoint)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if middle else 0
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def main():
    global W
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=[], help="run only cases whose name contains one of these")
    p.add_argument("--json", default="dist/hostile_battery.json", help="where the full records go")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args()
    ONLY.extend(args.only)
    if os.geteuid() != 0:
        sys.exit("run as root: the full-disk cases mount a tmpfs")
    W = Path(tempfile.mkdtemp(prefix="hostile-battery-"))
    t0 = time.monotonic()
    try:
        setup()
        print(f"fixtures ready in {time.monotonic() - t0:.0f} s under {W}", flush=True)
        for fn in CASES:
            fn()
    finally:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"root": str(ROOT), "python": PY, "wall_s": round(time.monotonic() - t0, 1),
                                               "results": RESULTS}, indent=1) + "\n")
        subprocess.run(["bash", "-c", f"grep -F ' {W}/' /proc/mounts | cut -d' ' -f2 | xargs -r -n1 umount -l"])
        if not args.keep:
            shutil.rmtree(W, ignore_errors=True)
    ok = sum(r["verdict"] == "OK" for r in RESULTS)
    print(f"\n{'case':44} {'rc':>6} {'lines':>5} {'secs':>6}  verdict  reason / first stderr line")
    for r in RESULTS:
        print(f"{r['name']:44} {r['rc']!s:>6} {r['stderr_lines']:>5} {r['wall_s']:>6}  {r['verdict']:7}  "
              f"{(r['reason'] or r['stderr_first'])[:100]}")
    print(f"\n{len(RESULTS)} cases: {ok} OK, {len(RESULTS) - ok} FAIL; {time.monotonic() - t0:.0f} s; details in {args.json}")


if __name__ == "__main__":
    main()
