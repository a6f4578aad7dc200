"""The next run's clean-up after a killed one touches only the project's own temporaries, whatever else lies beside
an output: a user's look-alike folders, another output's backup, a dangling link, a FIFO or a huge file as the lock,
or an output name too long for the temporaries beside it."""

import json
import os
import socket
import threading
import tracemalloc

import pytest

from conftest import run_main
from minigpt.plumbing.crash_recovery import _read_lock, recover_directory
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.output_lock import output_lock

DEAD = "3999993-deadbeef"  # a pid above the kernel's pid_max (2**22): no process has it


def folder_with(path, *files: str):
    path.mkdir()
    for name in files:
        (path / name).write_text(name)
    return path


def test_a_users_look_alike_folders_and_another_outputs_backup_are_left_alone(tmp_path):
    folder_with(tmp_path / "res", "metrics.json")
    mine = [folder_with(tmp_path / ".res.mybackup.old", "NOTES.txt"), tmp_path / ".res.draft.tmp",
            folder_with(tmp_path / f".res.v2.{DEAD}.old", "metrics.json"),  # res.v2's only copy after a killed swap
            tmp_path / f".res.{DEAD}.tmp\n"]  # one character more than a temporary's name
    mine[1].write_text("draft")
    mine[3].write_text("a file of the user's")
    ours = folder_with(tmp_path / f".res.{DEAD}.tmp", "half")
    recover_directory(tmp_path / "res")
    assert all(path.exists() for path in mine) and not ours.exists()


def test_a_missing_output_is_restored_only_from_its_own_backup(tmp_path):
    other = folder_with(tmp_path / f".res.v2.{DEAD}.old", "metrics.json")
    recover_directory(tmp_path / "res")
    assert not (tmp_path / "res").exists() and other.exists()  # res.v2's backup never becomes res
    own = folder_with(tmp_path / f".res.{DEAD}.old", "metrics.json")
    recover_directory(tmp_path / "res")
    assert (tmp_path / "res" / "metrics.json").is_file() and not own.exists()


def test_a_dangling_link_named_like_a_temporary_is_removed_without_a_traceback(tmp_path):
    folder_with(tmp_path / "res", "metrics.json")
    link = tmp_path / f".res.{DEAD}.old"
    link.symlink_to(tmp_path / "nowhere")
    recover_directory(tmp_path / "res")
    assert not os.path.lexists(link) and (tmp_path / "res" / "metrics.json").is_file()


def test_a_fifo_as_the_lock_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / ".res.lock")  # opened for reading, a FIFO with no writer would block for ever
    outcome = []

    def take_lock():
        try:
            with output_lock(tmp_path / "res"):
                outcome.append("taken")
        except UserError as error:
            outcome.append(str(error))

    thread = threading.Thread(target=take_lock, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert outcome and "lock file is unreadable" in outcome[0], outcome or "output_lock hung on the FIFO"


def test_a_lock_is_read_from_its_first_4_kib_only(tmp_path):
    lock = tmp_path / ".res.lock"
    holder = {"pid": 10**20, "host": socket.gethostname()}
    lock.write_text(json.dumps(holder))
    assert _read_lock(lock) == holder
    with open(lock, "a") as file:
        file.truncate(64 * 2**20)  # 64 MiB, sparse (a huge file there would be read into memory whole)
    tracemalloc.start()
    try:
        assert _read_lock(lock) is None  # no JSON object in the first 4 KiB: not a lock of ours
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes held to read a lock"


def test_an_output_name_too_long_for_its_temporaries_is_one_line_before_any_training(tmp_path, monkeypatch, capsys):
    out = tmp_path / ("b" * 240)  # a legal name: 255 bytes is the limit, but `.<name>.<pid>-<8 hex>.tmp` adds 22
    monkeypatch.setattr("experiment.training.pretraining.train", lambda *args, **kwargs: pytest.fail("trained first"))
    status, _, err = run_main("train_pretrain", ["--out", out, "--steps", "1"], monkeypatch, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "240 bytes" in err and "at most 233 bytes" in err and "choose another --out" in err
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_only_holds_a_lock_beside_it_may_have_a_longer_name(tmp_path):
    long = tmp_path / ("b" * 240)  # compare.py's --results, experiments.py's --out: files go inside, only the lock beside
    with output_lock(long, replaced_whole=False):
        assert (tmp_path / f".{long.name}.lock").is_file()
    with pytest.raises(UserError, match="at most 233 bytes"):
        with output_lock(long):
            pass


def test_a_run_that_fails_before_saving_leaves_no_empty_output_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "model"  # the scripts create it at once, to know they can write there
    status, _, err = run_main("train_pretrain", ["--out", out, "--batch-size", "1000000"], monkeypatch, capsys)
    assert status == 2 and "--batch-size" in err  # the memory guard, after the folder was made
    assert not out.exists()  # the folder itself; a parent the run made ("new") stays


@pytest.mark.parametrize("before", ["an empty folder", "nothing"])
def test_a_failed_run_keeps_a_folder_it_did_not_make_or_that_holds_something(tmp_path, before):
    out = tmp_path / "out"
    if before == "an empty folder":
        out.mkdir()
    with pytest.raises(RuntimeError):
        with output_lock(out):
            out.mkdir(exist_ok=True)
            if before == "nothing":
                (out / "saved.txt").write_text("a file the run saved before it failed")
            raise RuntimeError("the run fails")
    assert out.is_dir()
