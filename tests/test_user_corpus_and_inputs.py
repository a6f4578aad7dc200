"""A user's own corpus with no probe file, the tokenizer on real text, and every bad input of the issue-12 battery:
each ends in one line and exit status 2, before any tensor is allocated or any training step runs."""

import json
import shutil
import signal
import subprocess
import sys
import time

import torch

from conftest import FINETUNE_DATA_FLAGS, REPO, TINY_FLAGS, assert_one_line_error, run_main
from experiment.comparison.measure import raw_tensor_bytes
from minigpt.tokenizer import WordTokenizer

FIXTURES = REPO / "tests" / "fixtures"
GENESIS, SONNETS = FIXTURES / "genesis_1.txt", FIXTURES / "sonnets.txt"


def test_the_pipeline_runs_on_a_foreign_corpus_without_probes_and_records_it(tmp_path, monkeypatch, capsys):
    base, results = tmp_path / "base", tmp_path / "results"
    status, out, err = run_main("train_pretrain", ["--corpus", GENESIS, "--out", base, "--steps", "4", "--eval-interval", "2",
                                                   *TINY_FLAGS], monkeypatch, capsys)
    assert status == 0, err
    assert "knowledge probes are skipped" in out and "probe accuracy      skipped" in out
    assert "% of the training loop's wall time" in out
    corpus = json.loads((base / "run.json").read_text())["corpus"]
    assert corpus["path"] == str(GENESIS.resolve()) and len(corpus["sha256"]) == 64

    # No --pretrain-corpus: forgetting is measured on the corpus the base recorded, not on data/pretrain.txt.
    status, out, err = run_main("train_finetune", ["--pretrained", base, "--out", results, "--data", SONNETS, "--steps", "2",
                                                   "--eval-interval", "2", "--batch-size", "4", "--no-progress"], monkeypatch, capsys)
    assert status == 0, err
    assert "periodic evaluation" in out
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["settings"]["pretrain_corpus"] == str(GENESIS.resolve())
    assert metrics["settings"]["probes"] is None and metrics["methods"]["lora"]["after"]["finetune_probe_accuracy"] is None

    # From here on no corpus flag: compare.py, compare_adapters.py and generate.py use the corpora the results record.
    status, out, err = run_main("compare", ["--pretrained", base, "--results", results,
                                            "--latency-tokens", "2", "--latency-repeats", "1", "--no-progress"], monkeypatch, capsys)
    assert status == 0, err
    assert (results / "comparison.md").is_file()

    status, out, err = run_main("train_finetune", ["--pretrained", base, "--out", results, "--data", GENESIS, "--method", "lora",
                                                   "--adapter-name", "again", "--steps", "2", "--eval-interval", "2",
                                                   "--batch-size", "4", "--no-progress"], monkeypatch, capsys)
    assert status == 0, err
    status, out, err = run_main("compare_adapters", ["--pretrained", base, "--results", results, "--repeats", "1"], monkeypatch, capsys)
    assert status == 0, err
    comparison = json.loads((results / "adapters_comparison.json").read_text())
    assert comparison["corpora"] == {"pretraining": str(GENESIS.resolve()), "sonnets": str(SONNETS.resolve()),
                                     "again": str(GENESIS.resolve())}

    status, out, err = run_main("generate", ["--pretrained", base, "--results", results, "--max-new-tokens", "2"], monkeypatch, capsys)
    assert status == 0, err
    assert f"adapters recorded in {results}: sonnets" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  ")][:3] == ["base", "sonnets", "again"]
    prompts = [line.removeprefix("prompt: ") for line in out.splitlines() if line.startswith("prompt: ")]
    assert len(prompts) == 3 and "unknown to this model" not in out  # openings of the base's own validation text


def test_a_changed_pretraining_corpus_is_named(tmp_path, monkeypatch, capsys):
    corpus, base = tmp_path / "genesis.txt", tmp_path / "base"
    shutil.copy(GENESIS, corpus)
    status, _, err = run_main("train_pretrain", ["--corpus", corpus, "--out", base, "--steps", "2", "--eval-interval", "2",
                                                 *TINY_FLAGS], monkeypatch, capsys)
    assert status == 0, err
    corpus.write_text(corpus.read_text() + "\n\nAnd a verse that was not there.\n")
    status, _, err = run_main("train_finetune", ["--pretrained", base, "--out", tmp_path / "r", "--data", SONNETS], monkeypatch, capsys)
    assert_one_line_error(status, err, str(corpus), "has changed", "--pretrain-corpus")


def test_apostrophes_stay_inside_words():
    tokenizer = WordTokenizer.from_corpus(SONNETS.read_text())
    assert {"summer's", "ow'st", "love's", "mistress'"} - {"mistress'"} <= set(tokenizer.id_to_token)
    assert tokenizer.decode(tokenizer.encode("The king\u2019s men, I'll go.")) == "the <unk> men, <unk> go."
    assert tokenizer.decode(tokenizer.encode("thou grow'st")) == "thou grow'st"


def test_min_count_and_max_vocab_leave_rare_words_to_unk():
    text = GENESIS.read_text()
    full, capped = WordTokenizer.from_corpus(text), WordTokenizer.from_corpus(text, min_count=3)
    assert capped.vocab_size < full.vocab_size
    assert capped.encode("firmament whales") == [capped.token_to_id["firmament"], capped.unk_id]
    assert WordTokenizer.from_corpus(text, max_vocab=20).vocab_size == 20


def test_a_stray_tensor_file_among_the_results_is_measured_not_a_traceback(tmp_path):
    torch.save([torch.zeros(4)], tmp_path / "stray.pt")
    torch.save("not a tensor", tmp_path / "other.pt")
    assert raw_tensor_bytes(tmp_path) == 16


def test_a_huge_width_is_refused_before_any_allocation(monkeypatch, capsys):
    start = time.perf_counter()
    status, _, err = run_main("train_pretrain", ["--corpus", GENESIS, "--n-embd", "100000", "--n-head", "4"], monkeypatch, capsys)
    assert_one_line_error(status, err, "parameters", "GiB", "--n-embd")
    assert time.perf_counter() - start < 5


def base_with_config(pipeline, tmp_path, **changes):
    base = tmp_path / "base"
    shutil.copytree(pipeline["pretrained"], base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, **changes}))
    return base


def test_a_boolean_in_an_integer_field_of_config_json_is_named(pipeline, tmp_path, monkeypatch, capsys):
    base = base_with_config(pipeline, tmp_path, n_layer=True)
    status, _, err = run_main("train_finetune", ["--pretrained", base, "--out", tmp_path / "r", *FINETUNE_DATA_FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "config.json is corrupted", "n_layer must be a positive integer, got True")


def test_an_impossible_size_in_config_json_is_named_with_the_number(pipeline, tmp_path, monkeypatch, capsys):
    base = base_with_config(pipeline, tmp_path, n_embd=4_000_000, n_head=1)
    status, _, err = run_main("train_finetune", ["--pretrained", base, "--out", tmp_path / "r", *FINETUNE_DATA_FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "config.json", "parameters", "GiB")


def damaged_metrics(pipeline, tmp_path, damage):
    results = tmp_path / "results"
    shutil.copytree(pipeline["results"], results)
    metrics = json.loads((results / "metrics.json").read_text())
    damage(metrics["methods"]["freeze"])
    (results / "metrics.json").write_text(json.dumps(metrics))
    return results


def test_a_string_where_metrics_json_needs_a_number_is_named(pipeline, tmp_path, monkeypatch, capsys):
    results = damaged_metrics(pipeline, tmp_path, lambda record: record.update(train_seconds="12"))
    status, _, err = run_main("compare", ["--pretrained", pipeline["pretrained"], "--results", results, *FINETUNE_DATA_FLAGS],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "metrics.json is corrupted", "train_seconds must be a number")


def test_a_malformed_history_in_metrics_json_is_named(pipeline, tmp_path, monkeypatch, capsys):
    results = damaged_metrics(pipeline, tmp_path, lambda record: record.update(history=[1, 2]))
    status, _, err = run_main("compare", ["--pretrained", pipeline["pretrained"], "--results", results, *FINETUNE_DATA_FLAGS],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "metrics.json is corrupted", "history")


def test_finetuning_refuses_an_out_holding_the_users_files_before_training(pipeline, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.json").write_text("my own")
    (out / "thesis.tex").write_text("precious")
    status, stdout, err = run_main("train_finetune", ["--pretrained", pipeline["pretrained"], "--out", out, *FINETUNE_DATA_FLAGS,
                                                      "--method", "lora", "--train-last-k", "1"], monkeypatch, capsys)
    assert_one_line_error(status, err, "thesis.tex", "choose another --out")
    assert "note: --train-last-k only affects --method freeze" in stdout  # an ignored flag is said, not dropped
    assert "==" not in stdout  # refused before any method trained
    assert (out / "metrics.json").read_text() == "my own"


def test_threads_below_one_is_refused(monkeypatch, capsys):
    for script in ("train_pretrain", "train_finetune", "compare"):
        status, _, err = run_main(script, ["--threads", "0"], monkeypatch, capsys)
        assert_one_line_error(status, err, "--threads", "at least 1")


def test_ctrl_c_during_start_up_is_one_line():
    process = subprocess.Popen([sys.executable, str(REPO / "train_pretrain.py"), "--help"], cwd=REPO, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # python is up and the handler installed; torch is still importing
    process.send_signal(signal.SIGINT)
    err = process.stderr.read()
    assert process.wait(timeout=60) == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
