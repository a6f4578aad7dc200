"""torchrun with 2 CPU processes (gloo) trains exactly as one process does on the same global batch."""

import json
import os
import subprocess
import sys

from conftest import DATA, REPO, assert_one_line_error, run_main

# Three steps, evaluated after each one, so every recorded loss depends on every optimizer step so far.
FLAGS = ["--corpus", DATA / "pretrain.txt", "--probes", DATA / "pretrain_probes.json", "--steps", "3", "--eval-interval", "1",
         "--batch-size", "4", "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
         "--threads", "1", "--no-progress", "--prompt", "the cow"]


def torchrun(args: list, processes: int) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                           "--standalone", str(REPO / "train_pretrain.py"), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=environment)


def test_two_processes_give_the_losses_of_one_process_on_the_same_global_batch(tmp_path, monkeypatch, capsys):
    result = torchrun([*FLAGS, "--out", tmp_path / "parallel"], processes=2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("final loss") == 1  # rank 0 alone prints
    status, _, err = run_main("train_pretrain", [*FLAGS, "--out", tmp_path / "single"], monkeypatch, capsys)
    assert status == 0, err
    parallel = json.loads((tmp_path / "parallel" / "history.json").read_text())["history"]
    single = json.loads((tmp_path / "single" / "history.json").read_text())["history"]
    assert [r["step"] for r in parallel] == [0, 1, 2, 3]
    assert parallel[-1]["train_loss"] != parallel[0]["train_loss"]  # the steps really changed the model
    for one, two in zip(single, parallel):
        assert one["tokens_seen"] == two["tokens_seen"]  # the global batch, not one process's share
        for key in ("train_loss", "val_loss"):  # float32 rounding: the gradients are summed in another order
            assert abs(one[key] - two[key]) <= 1e-5 * abs(one[key]), (one, two)


def test_a_batch_that_does_not_split_evenly_over_the_processes_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc_per_node 2 sets it; the check comes before joining a group
    status, _, err = run_main("train_pretrain", [*FLAGS, "--batch-size", "3", "--out", tmp_path / "m"], monkeypatch, capsys)
    assert_one_line_error(status, err, "--batch-size 3 does not split evenly over 2 processes")
    assert not (tmp_path / "m").exists()
