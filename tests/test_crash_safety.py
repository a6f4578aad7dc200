"""Crash safety: kill -9 at every point of a save, Ctrl-C while fine-tuning results are written, a file-size
limit while saving, a diverged run, and a results folder whose pieces come from different runs."""

import json
import shutil
import signal
import socket

import pytest
import torch

from conftest import FINETUNE_DATA_FLAGS, REPO, TINY_FLAGS, assert_one_line_error, run_main, tiny_model
from forked_scripts import ForkedScript, ScriptServer
from minigpt.checkpoint import load_model_dir, model_fingerprint, save_model_dir
from minigpt.plumbing.atomic_writes import _exchange
from minigpt.plumbing.crash_recovery import TEMPORARY_NAME
from minigpt.tokenizer import WordTokenizer

GENESIS = REPO / "tests" / "fixtures" / "genesis_1.txt"
PRETRAIN_TINY = ["--corpus", GENESIS, "--steps", "2", "--eval-interval", "2", *TINY_FLAGS]


def save_old_model(path):
    model = tiny_model(vocab_size=30, seed=3)
    save_model_dir(path, model, WordTokenizer(["<pad>", "<unk>", "<eot>"] + [f"w{i}" for i in range(27)]))
    return model_fingerprint(model)


@pytest.fixture(scope="module")
def scripts():
    """Real script processes forked from one that has imported torch (tests/forked_scripts.py)."""
    server = ScriptServer()
    yield server
    server.close()


def start_paused(scripts: ScriptServer, script: str, args: list, pause_at: str, **env) -> ForkedScript:
    """Start a real script that stops at `pause_at` (MINIGPT_TEST_PAUSE_AT); `wait_until_paused` waits for it."""
    return scripts.start(script, args, env={"MINIGPT_TEST_PAUSE_AT": pause_at, **env})


def wait_until_paused(process: ForkedScript, pause_at: str) -> None:
    seen = process.read_stderr(until=f"paused at {pause_at}")
    if f"paused at {pause_at}" not in seen:
        pytest.fail(f"the script ended (status {process.wait()}) before reaching {pause_at}:\n{seen}")


def leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def temporary_kinds(path) -> set[str]:
    """The kinds (tmp, old) of the save's own temporaries beside `path`; the output lock does not count."""
    return {match["kind"] for p in path.parent.iterdir() if (match := TEMPORARY_NAME.fullmatch(p.name)) and match["name"] == path.name}


# (point, portable fallback?, which model the path must hold after the next load, the temporaries the kill leaves):
# every pause point of write_directory_atomically. Before the swap both ways are the same code; the swap
# itself is one renameat2 exchange (the new directory's temporary then holds the old model) or, in the
# portable fallback, the old directory moved aside (.old) and the new one moved in.
KILL_POINTS = [("before-write", False, "old", {"tmp"}), ("written", False, "old", {"tmp"}), ("swapped", False, "new", {"tmp"}),
               ("aside", True, "old", {"old", "tmp"}), ("swapped", True, "new", {"old"})]


def test_kill_9_at_every_point_of_the_save_leaves_the_old_or_the_new_model_and_no_temporary(scripts, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    exchanges = _exchange(tmp_path / "a", tmp_path / "b")  # False: not Linux, or a file system without renameat2
    paths, processes = [], []
    for index, (point, portable, _, _) in enumerate(KILL_POINTS):  # all at once: they train while the others start
        path = tmp_path / f"m{index}"
        old = save_old_model(path)
        env = {"MINIGPT_TEST_PORTABLE_SWAP": "1"} if portable else {}
        paths.append(path)
        processes.append(start_paused(scripts, "train_pretrain", [*PRETRAIN_TINY, "--out", path], f"{point}:{path.name}", **env))
    try:
        for (point, portable, expected, kinds), path, process in zip(KILL_POINTS, paths, processes):
            if point == "swapped" and not portable and not exchanges:
                kinds = {"old"}  # the save falls back to the portable swap, as it should
            wait_until_paused(process, f"{point}:{path.name}")
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert temporary_kinds(path) == kinds, f"{point} (portable={portable}): the kill should leave {kinds} to clean up"
            assert path.exists() == (point != "aside"), f"{point}: the old model should be moved aside only between the renames"
            loaded, _ = load_model_dir(path)  # recovery runs first
            assert (model_fingerprint(loaded) == old) == (expected == "old"), f"{point} (portable={portable})"
            assert leftovers(path) == [], f"{point}: temporaries left after the next load"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def test_the_next_run_removes_temporaries_of_killed_runs(tmp_path, monkeypatch, capsys):
    path = tmp_path / "model"
    save_old_model(path)
    # pids that cannot be alive: one above the kernel's pid_max, one beyond any C integer (os.kill overflows)
    for stale in (tmp_path / ".model.999999999-deadbeef.tmp", tmp_path / ".model.99999999999999999999-deadbeef.tmp"):
        stale.mkdir()
        (stale / "model.pt").write_bytes(b"half")
    (tmp_path / ".model.lock").write_text(json.dumps({"pid": 10**20, "host": socket.gethostname(), "started": "?"}))
    status, _, err = run_main("train_pretrain", [*PRETRAIN_TINY, "--out", path], monkeypatch, capsys)
    assert status == 0, err
    assert leftovers(path) == []


def test_a_save_under_a_file_size_limit_fails_in_one_line_and_keeps_the_old_model(scripts, tmp_path):
    path = tmp_path / "model"
    old = save_old_model(path)
    process = scripts.start("train_pretrain", [*PRETRAIN_TINY, "--out", path], file_size_limit=20_000)
    err = process.communicate()
    assert_one_line_error(process.returncode, err, "could not write", str(path), "unchanged")
    assert model_fingerprint(load_model_dir(path)[0]) == old
    assert leftovers(path) == []


def test_a_diverged_run_stops_in_one_line_and_never_replaces_the_saved_model(tmp_path, monkeypatch, capsys):
    path = tmp_path / "model"
    old = save_old_model(path)
    status, _, err = run_main("train_pretrain", [*PRETRAIN_TINY, "--lr", "1000", "--steps", "5", "--out", path], monkeypatch, capsys)
    assert_one_line_error(status, err, "diverged", "lower --lr")
    assert model_fingerprint(load_model_dir(path)[0]) == old


def test_a_base_with_nan_weights_is_refused(pipeline, tmp_path, monkeypatch, capsys):
    base = tmp_path / "base"
    shutil.copytree(pipeline["pretrained"], base)
    state = torch.load(base / "model.pt", weights_only=True)
    next(iter(state.values())).view(-1)[0] = float("nan")
    torch.save(state, base / "model.pt")
    status, out, err = run_main("train_finetune", ["--pretrained", base, "--out", tmp_path / "r", *FINETUNE_DATA_FLAGS],
                                monkeypatch, capsys)
    assert_one_line_error(status, err, "NaN or infinite", "model.pt")


@pytest.fixture
def results_copy(pipeline, tmp_path):
    pretrained, results = tmp_path / "pretrained", tmp_path / "results"
    shutil.copytree(pipeline["pretrained"], pretrained)
    shutil.copytree(pipeline["results"], results)
    return pretrained, results


def compare(pretrained, results, monkeypatch, capsys):
    return run_main("compare", ["--pretrained", pretrained, "--results", results, *FINETUNE_DATA_FLAGS,
                                "--latency-tokens", "2", "--latency-repeats", "1", "--no-progress"], monkeypatch, capsys)


def run_ids(results):
    metrics = json.loads((results / "metrics.json").read_text())
    on_disk = {d: json.loads((results / d / "run.json").read_text())["run_id"]
               for d in ("full_finetune", "layer_freezing", "lora_adapter", "lora_merged")}
    return {name: record["run_id"] for name, record in metrics["methods"].items()}, on_disk


def test_ctrl_c_while_finetuning_results_are_written_leaves_the_old_complete_set(scripts, results_copy, monkeypatch, capsys):
    pretrained, results = results_copy
    before = run_ids(results)
    pause_at = "before-write:lora_merged"  # the adapter of the new run is written, its merged model not yet
    process = start_paused(scripts, "train_finetune", ["--pretrained", pretrained, "--out", results, *FINETUNE_DATA_FLAGS,
                                                       "--method", "lora", "--steps", "2", "--eval-interval", "2",
                                                       "--batch-size", "4", "--no-progress"], pause_at)
    try:
        wait_until_paused(process, pause_at)
        process.send_signal(signal.SIGINT)
        rest = process.read_stderr()
        assert process.wait(timeout=60) == 130, rest
        assert "Traceback" not in rest
    finally:
        if process.poll() is None:
            process.kill()
    assert run_ids(results) == before
    status, _, err = compare(pretrained, results, monkeypatch, capsys)
    assert status == 0, err
    assert leftovers(results) == []


def test_compare_refuses_a_results_folder_mixing_two_runs(results_copy, monkeypatch, capsys):
    pretrained, results = results_copy
    run_file = results / "lora_merged" / "run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "run_id": "another-run"}))
    status, _, err = compare(pretrained, results, monkeypatch, capsys)
    assert_one_line_error(status, err, "mix runs", "lora_merged/", "another-run")


def test_compare_fails_when_the_merge_check_is_beyond_float32_rounding(results_copy, monkeypatch, capsys):
    pretrained, results = results_copy
    shutil.copy(results / "full_finetune" / "model.pt", results / "lora_merged" / "model.pt")  # same shapes, other weights
    status, _, err = compare(pretrained, results, monkeypatch, capsys)
    assert_one_line_error(status, err, "merge check failed", "beyond float32 rounding")


def test_compare_fails_when_a_variants_merged_model_is_not_its_adapter_merged(results_copy, monkeypatch, capsys):
    pretrained, results = results_copy
    shutil.copy(results / "full_finetune" / "model.pt", results / "variants" / "dora" / "merged" / "model.pt")
    status, _, err = compare(pretrained, results, monkeypatch, capsys)
    assert_one_line_error(status, err, "merge check failed", "variants/dora/merged/")
