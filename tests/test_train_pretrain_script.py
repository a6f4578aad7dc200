import json
import os

import pytest

from conftest import DATA, TINY_FLAGS, assert_one_line_error, run_main, run_subprocess
from minigpt.checkpoint import load_model_dir

CORPUS_FLAGS = ["--corpus", DATA / "pretrain.txt", "--probes", DATA / "pretrain_probes.json"]


def test_pretraining_writes_every_promised_file(pipeline):
    out = pipeline["pretrained"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.json", "loss.png", "model.pt", "run.json", "tokenizer.json"]
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history["history"]] == [0, 10, 20, 30]
    assert history["history"][-1]["val_loss"] < history["history"][0]["val_loss"]
    summary = history["summary"]
    for key in ("val_perplexity", "unigram_val_perplexity", "probe_accuracy", "tokens_per_second", "samples"):
        assert key in summary
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    model, tokenizer = load_model_dir(out)
    assert model.config.n_embd == 16 and tokenizer.vocab_size == model.config.vocab_size
    log = (pipeline["root"] / "train_pretrain.log").read_text()
    for line_start in ("model: ", "final loss", "validation perplexity", "probe accuracy", "speed", "samples (greedy):"):
        assert f"\n{line_start}" in log, line_start


def test_the_summary_reports_perplexity_against_the_unigram_baseline(tmp_path, monkeypatch, capsys):
    status, out, _ = run_main("train_pretrain", [*CORPUS_FLAGS, "--out", tmp_path / "m", "--steps", "2", *TINY_FLAGS,
                                                 "--prompt", "the zebrafish of mars"], monkeypatch, capsys)
    assert status == 0
    assert "unigram baseline" in out and "probe accuracy" in out and "tokens/s" in out
    assert "2 prompt word(s) are not in the vocabulary and map to <unk>: zebrafish, mars" in out


def test_steps_zero_is_one_line_and_exit_2_from_a_real_process():
    result = run_subprocess("train_pretrain", ["--steps", "0"])
    assert_one_line_error(result.returncode, result.stderr, "--steps", "must be at least 1")


def test_a_missing_corpus_is_named(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("train_pretrain", ["--corpus", tmp_path / "none.txt", "--out", tmp_path / "m"], monkeypatch, capsys)
    assert_one_line_error(status, err, "none.txt does not exist")


def test_a_corpus_that_is_a_device_or_a_pipe_is_named_as_such_not_missing(tmp_path, monkeypatch, capsys):
    os.mkfifo(tmp_path / "pipe")
    for corpus in ("/dev/null", tmp_path / "pipe"):
        status, _, err = run_main("train_pretrain", ["--corpus", corpus, "--out", tmp_path / "m"], monkeypatch, capsys)
        assert_one_line_error(status, err, "is not a regular file")


def test_an_empty_corpus_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty.txt").write_text("\n")
    status, _, err = run_main("train_pretrain", ["--corpus", tmp_path / "empty.txt", "--out", tmp_path / "m"], monkeypatch, capsys)
    assert_one_line_error(status, err, "empty.txt is empty")


def test_a_corpus_shorter_than_one_window_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "short.txt").write_text("\n\n".join(["the cat sat."] * 12))
    status, _, err = run_main("train_pretrain", [*CORPUS_FLAGS[2:], "--corpus", tmp_path / "short.txt", "--out", tmp_path / "m"],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "fewer than one context window")


def test_a_non_utf8_corpus_names_the_byte_offset(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.txt").write_bytes("good text\n".encode() * 3 + b"\xff\xfe")
    status, _, err = run_main("train_pretrain", ["--corpus", tmp_path / "bad.txt", "--out", tmp_path / "m"], monkeypatch, capsys)
    assert_one_line_error(status, err, "bad.txt is not UTF-8", "byte 30")


def test_negative_sizes_are_refused(monkeypatch, capsys):
    status, _, err = run_main("train_pretrain", ["--batch-size", "-4"], monkeypatch, capsys)
    assert_one_line_error(status, err, "--batch-size", "must be at least 1")


def test_width_not_divisible_by_heads_is_refused(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("train_pretrain", [*CORPUS_FLAGS, "--n-embd", "30", "--n-head", "4", "--out", tmp_path / "m"],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "n_embd (30) must be divisible by n_head (4)")


def test_an_unwritable_output_directory_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("not a directory")
    status, _, err = run_main("train_pretrain", [*CORPUS_FLAGS, "--out", tmp_path / "a_file" / "model"], monkeypatch, capsys)
    assert_one_line_error(status, err, "cannot create output directory", "choose another --out")


def test_an_output_directory_with_other_files_is_never_replaced(tmp_path, monkeypatch, capsys):
    (tmp_path / "keep.txt").write_text("precious")
    status, _, err = run_main("train_pretrain", [*CORPUS_FLAGS, "--out", tmp_path, *TINY_FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "keep.txt", "choose another --out")
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_a_probe_answer_outside_the_vocabulary_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "probes.json").write_text(json.dumps([{"prompt": "the cow says", "answer": "olive oil"}]))
    status, _, err = run_main("train_pretrain", ["--probes", tmp_path / "probes.json", "--out", tmp_path / "m", *TINY_FLAGS],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "probe answer 'olive oil'", "not a single lower-case word")


def test_a_directory_given_as_corpus_is_named(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("train_pretrain", ["--corpus", tmp_path, "--out", tmp_path / "m"], monkeypatch, capsys)
    assert_one_line_error(status, err, "is a directory, not a file")


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], "--seed: must be between 0"),
    (["--seed", str(2**64)], "--seed: must be between 0"),
    (["--lr", "inf"], "--lr: must be a finite number"),
    (["--lr", "nan"], "--lr: must be a finite number"),
    (["--device", "tpu"], "unknown --device 'tpu'"),
    (["--device", "cuda:abc"], "unknown --device 'cuda:abc'"),
])
def test_bad_flag_values_are_one_line_errors(tmp_path, monkeypatch, capsys, flags, message):
    status, _, err = run_main("train_pretrain", [*CORPUS_FLAGS, "--out", tmp_path / "m", *TINY_FLAGS, *flags], monkeypatch, capsys)
    assert_one_line_error(status, err, message)
