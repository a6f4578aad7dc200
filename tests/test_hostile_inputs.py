"""Hostile but realistic inputs end in one line (a UserError, exit status 2), never a traceback, hang or silent load."""

import ast
import json
import os
import random
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error, run_main, tiny_model
from minigpt.plumbing.atomic_writes import atomic_write_text, refuse_foreign_directory
from minigpt.checkpoint import load_model_dir, save_model_dir
from minigpt.config import GPTConfig, available_memory_bytes
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.flags import whole_number_up_to
from minigpt.plumbing.reading import MAX_JSON_DEPTH, parse_json, read_json_file
from minigpt.tokenizer import WordTokenizer

WORDS = ["<pad>", "<unk>", "<eot>"] + [f"w{i}" for i in range(47)]


@pytest.fixture
def model_dir(tmp_path):
    return save_model_dir(tmp_path / "model", tiny_model(vocab_size=50), WordTokenizer(WORDS))


def test_deeply_nested_json_is_a_value_error_not_a_recursion_error():
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_a_deeply_nested_model_file_is_one_line(model_dir, name):
    (model_dir / name).write_text('{"vocab": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(UserError, match="nested deeper") as caught:
        load_model_dir(model_dir)
    assert "\n" not in str(caught.value)


def test_a_huge_json_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import minigpt.plumbing.reading
    monkeypatch.setattr(minigpt.plumbing.reading, "MAX_JSON_BYTES", 10)  # read_json_file looks it up in minigpt.plumbing.reading
    (tmp_path / "big.json").write_text("[" + "1," * 20 + "1]")
    with pytest.raises(UserError, match="MiB this project reads whole"):
        read_json_file(tmp_path / "big.json", "metrics file")


def test_flipped_bytes_in_model_pt_are_caught_by_the_zip_checksums(model_dir):
    raw = bytearray((model_dir / "model.pt").read_bytes())
    random.seed(0)
    for i in random.sample(range(len(raw) // 3, 2 * len(raw) // 3), 64):
        raw[i] ^= 0xFF
    (model_dir / "model.pt").write_bytes(bytes(raw))
    with pytest.raises(UserError, match="corrupted"):
        load_model_dir(model_dir)


def test_int64_weights_are_refused_not_cast(model_dir):
    state = torch.load(model_dir / "model.pt", weights_only=True)
    state = {key: (value * 1000).long() if value.is_floating_point() else value for key, value in state.items()}
    torch.save(state, model_dir / "model.pt")
    with pytest.raises(UserError, match="torch.int64, the model's is torch.float32"):
        load_model_dir(model_dir)


def test_the_memory_guard_counts_activations_against_available_memory():
    config = GPTConfig(vocab_size=800, block_size=64, n_layer=4, n_head=4, n_embd=64).validate(training=True)
    config.check_memory(training=True, batch_size=32)  # the default pipeline fits
    assert 4 * config.estimated_activation_floats(2_000_000) > available_memory_bytes()
    with pytest.raises(UserError, match="--batch-size"):
        config.check_memory(training=True, batch_size=2_000_000)


def test_a_stray_temporary_of_a_dead_writer_is_removed_not_called_a_users_file(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    dead = 2**22 + 12345  # above the usual pid_max's default, so no live process has it
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
    for stray in (f".comparison.md.{dead}-0123abcd.tmp", f".loss.png.{dead}-89abcdef.tmp"):
        (out / stray).write_text("half")
    refuse_foreign_directory(out, {"metrics.json"})  # no error: the leftovers are the project's own
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        refuse_foreign_directory(out, {"metrics.json"})


def test_atomic_writes_leave_no_temporary_and_name_it_with_the_pid(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_bounded_numbers_say_why():
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="at most 10"):
        whole_number_up_to(10, "a bound")("11")
    assert whole_number_up_to(10, "a bound")("10") == 10


HUGE = str(10**23)  # overflowed tqdm (steps) and randint (batch size), or evaluated for ever (evaluation batches)
TRAINING_FLAG_BOUNDS = [(script, flag, value, message)
                        for script in ("train_pretrain", "train_finetune", "finetune_hf", "experiments")
                        for flag, value, message in (("--steps", HUGE, "at most 10,000,000"),
                                                     ("--batch-size", HUGE, "at most 1,000,000"),
                                                     ("--lrs" if script == "experiments" else "--lr", "1e300", "at most 1e+06"))
                        ] + [("finetune_hf", "--eval-batches", HUGE, "at most 10,000"),
                             ("train_finetune", "--loraplus-lr-ratio", "1e300", "at most 10,000"),
                             ("train_finetune", "--alpha", "1e300", "at most 100,000"),
                             ("finetune_hf", "--alpha", "1e300", "at most 100,000")]


@pytest.mark.parametrize("script, flag, value, message", TRAINING_FLAG_BOUNDS)
def test_training_flags_past_their_bound_are_one_line_not_an_overflow_later(script, flag, value, message, monkeypatch, capsys):
    args = ["pareto"] if script == "experiments" else []  # its study, before the flags
    status, _, err = run_main(script, [*args, flag, value], monkeypatch, capsys)
    assert_one_line_error(status, err, flag, message)


def test_a_tampered_study_cache_is_one_line(tmp_path):
    from experiment.studies.runner import read_cached_run
    path = tmp_path / "run.json"
    for text in ("{not json", "[" * 5000 + "]" * 5000, json.dumps({"settings": {}, "label": "x"})):
        path.write_text(text)
        with pytest.raises(UserError, match="delete it and that run is redone"):
            read_cached_run(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="not UTF-8"):
        read_cached_run(path)


def test_a_second_writer_of_one_out_is_refused_and_told_who_holds_it(tmp_path):
    from minigpt.plumbing.output_lock import output_lock
    with output_lock(tmp_path / "results"):
        with pytest.raises(UserError, match=f"being written by another run \\(pid {os.getpid()} on "):
            with output_lock(tmp_path / "results"):
                pass
    assert not (tmp_path / ".results.lock").exists()  # released


def test_a_lock_that_cannot_be_written_is_one_line_and_left_behind_by_no_one(tmp_path, monkeypatch):
    from minigpt.plumbing.output_lock import output_lock

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", disk_full)  # the lock file is created, its bytes cannot be written
    with pytest.raises(UserError, match="cannot write the lock file .*No space left on device"):
        with output_lock(tmp_path / "results"):
            pass
    assert not (tmp_path / ".results.lock").exists()  # an empty lock would refuse every later run


def test_staged_files_replace_all_of_them_or_none(tmp_path):
    from minigpt.plumbing.atomic_writes import atomic_path, staged_files
    (tmp_path / "table.md").write_text("old table")
    (tmp_path / "plot.png").write_text("old plot")
    with pytest.raises(UserError, match=f"could not write {tmp_path / 'plot.png'} \\(No space left on device\\); nothing in {tmp_path} was changed"):
        with staged_files(tmp_path) as staging:
            atomic_write_text(staging / "table.md", "new table")
            with atomic_path(staging / "plot.png"):
                raise OSError(28, "No space left on device")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"table.md": "old table", "plot.png": "old plot"}
    with staged_files(tmp_path) as staging:
        atomic_write_text(staging / "table.md", "new table")
        atomic_write_text(staging / "plot.png", "new plot")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"table.md": "new table", "plot.png": "new plot"}


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path):
    import socket
    from minigpt.plumbing.output_lock import output_lock
    (tmp_path / ".results.lock").write_text(json.dumps({"pid": 2**22 + 4321, "host": socket.gethostname(), "started": "then"}))
    with output_lock(tmp_path / "results"):
        assert json.loads((tmp_path / ".results.lock").read_text())["pid"] == os.getpid()


def test_a_symlinked_out_is_followed_not_replaced(tmp_path):
    from minigpt.plumbing.atomic_writes import write_directory_atomically
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    write_directory_atomically(tmp_path / "link", lambda d: (d / "a.txt").write_text("new"))
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "a.txt").read_text() == "new"


def a_file(directory: Path) -> Path:
    (directory / "file").write_text("x")
    return directory / "file"


@pytest.mark.parametrize("make_out", [a_file, lambda p: Path("/proc/nope")])
def test_experiments_out_that_cannot_be_a_directory_is_one_line(tmp_path, monkeypatch, capsys, make_out):
    from conftest import assert_one_line_error, run_main
    status, _, err = run_main("experiments", ["seeds", "--out", make_out(tmp_path)], monkeypatch, capsys)
    assert_one_line_error(status, err, "--out")


SCRIPTS = ["train_pretrain.py", "train_finetune.py", "compare.py", "generate.py", "compare_adapters.py", "experiments.py",
           "peft_convert.py", "finetune_hf.py", "worked_example.py", "draw_lora_figure.py", "coursework/grade.py",
           "coursework/handout.py", "data/make_corpora.py"]


def _top_level_statements(tree):
    """The module's statements in order, those of an `if __name__ == "__main__":` block included where it stands."""
    for node in tree.body:
        yield node
        if isinstance(node, ast.If):
            yield from node.body


def _installs_sigint_handler(node) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "signal.signal"
            and ast.unparse(node.value.args[0]) == "signal.SIGINT")


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_during_start_up_is_handled_before_the_first_heavy_import(script):
    # A KeyboardInterrupt inside torch's or numpy's imports is a long traceback, or is swallowed (the run goes on to
    # exit 0), or leaves numpy half-made ("module 'numpy' has no attribute 'minimum'"): a quiet handler must come first.
    tree = ast.parse((Path(__file__).resolve().parent.parent / script).read_text(encoding="utf-8"))
    order = list(_top_level_statements(tree))
    handler = next((i for i, node in enumerate(order) if _installs_sigint_handler(node)), len(order))
    heavy = next((i for i, node in enumerate(order) if isinstance(node, (ast.Import, ast.ImportFrom))
                  and any(name.split(".")[0] not in sys.stdlib_module_names
                          for name in ([alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]))),
                 len(order))
    assert handler < heavy or heavy == len(order), f"{script}: the start-up SIGINT handler comes after its first non-standard import"


def test_ctrl_c_once_main_has_ended_is_ignored_so_teardown_cannot_kill_a_finished_run():
    import signal

    from minigpt.plumbing.errors import run_cli

    def mistake():
        raise UserError("a mistake")

    previous = signal.getsignal(signal.SIGINT)
    try:
        for main in (lambda: None, mistake):
            signal.signal(signal.SIGINT, previous)
            try:
                run_cli(main)
            except SystemExit as exit_:
                assert exit_.code == 2
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
