"""A second adapter end to end (train_finetune.py --adapter-name), generate.py and compare_adapters.py, with tiny models."""

import io
import json
import shutil
import sys

import pytest
import torch

from conftest import DATA, FINETUNE_DATA_FLAGS, TINY_FLAGS, assert_one_line_error, run_main

SPORT_FLAGS = ["--data", DATA / "sport.txt", "--probes", DATA / "sport_probes.json"]


@pytest.fixture(scope="module")
def two_adapters(pipeline, tmp_path_factory):
    """The pipeline's results copied, plus a sport adapter trained for 2 steps on the same tiny base."""
    results = tmp_path_factory.mktemp("two") / "results"
    shutil.copytree(pipeline["results"], results)
    metrics_before = (results / "metrics.json").read_bytes()
    monkeypatch, capsys = pytest.MonkeyPatch(), None
    argv = ["train_finetune.py", "--pretrained", pipeline["pretrained"], "--out", results, *FINETUNE_DATA_FLAGS, *SPORT_FLAGS,
            "--method", "lora", "--adapter-name", "sport", "--steps", "2", "--eval-interval", "2", "--batch-size", "4", "--no-progress"]
    monkeypatch.setattr(sys, "argv", list(map(str, argv)))
    __import__("train_finetune").main()
    monkeypatch.undo()
    return {"pretrained": pipeline["pretrained"], "results": results, "metrics_before": metrics_before}


def adapter_flags(two_adapters):
    results = two_adapters["results"]
    return ["--pretrained", two_adapters["pretrained"], "--adapter", f"cooking={results / 'lora_adapter'}",
            "--adapter", f"sport={results / 'adapters' / 'sport'}"]


def test_a_named_adapter_is_saved_by_name_and_leaves_the_default_results_alone(two_adapters):
    results = two_adapters["results"]
    assert {p.name for p in (results / "adapters" / "sport").iterdir()} == {
        "lora_weights.pt", "embedding_weights.pt", "lora_config.json", "tokenizer.json", "run.json", "merged", "metrics.json"}
    assert (results / "adapters" / "sport" / "merged" / "model.pt").is_file()
    assert (results / "metrics.json").read_bytes() == two_adapters["metrics_before"]
    assert "tennis" in json.loads((results / "adapters" / "sport" / "metrics.json").read_text())["new_words"]
    run_ids = {json.loads((results / "adapters" / "sport" / d / "run.json").read_text())["run_id"] for d in (".", "merged")}
    assert len(run_ids) == 1  # one run, one directory


def test_generate_prints_every_model_side_by_side(two_adapters, monkeypatch, capsys):
    status, out, err = run_main("generate", [*adapter_flags(two_adapters), "--mix", "cooking=0.5,sport=0.5",
                                             "--prompt", "risotto is made with", "--max-new-tokens", "3"], monkeypatch, capsys)
    assert status == 0, err
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert rows == ["base", "cooking", "sport", "cooking=0.5,sport=0.5"]
    assert "[unknown to this model: risotto]" in out  # the base and the sport adapter lack the cooking word


def test_generate_with_and_without_the_cache_prints_the_same_text(two_adapters, monkeypatch, capsys):
    outputs = []
    for extra in ([], ["--no-cache"]):
        status, out, err = run_main("generate", [*adapter_flags(two_adapters), "--prompt", "the cow says", "--max-new-tokens", "20", *extra],
                                    monkeypatch, capsys)
        assert status == 0, err
        outputs.append([line for line in out.splitlines() if line.startswith("  ")])
    assert outputs[0] == outputs[1]


def test_interactive_mode_switches_models_and_survives_mistakes(two_adapters, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(":use sport\nthe cow says\n:use chess\n:mix cooking=abc\n:none\n:list\n:quit\n"))
    status, out, err = run_main("generate", [*adapter_flags(two_adapters), "--interactive", "--max-new-tokens", "2"], monkeypatch, capsys)
    assert status == 0
    assert "the cow says" in out and "selected: base" in out
    errors = err.strip().splitlines()
    assert len(errors) == 2 and "unknown model 'chess'" in errors[0] and "cooking=abc" in errors[1]


@pytest.mark.parametrize("extra, fragment", [
    (["--mix", "cooking=0.5,chess=0.5"], "unknown adapter 'chess'"),
    (["--mix", "cooking=half,sport=0.5"], "needs a number"),
    (["--prompt", "zzz qqq"], "no word of the prompt"),
    (["--adapter", "broken"], "must look like NAME=DIRECTORY"),
])
def test_generate_mistakes_end_in_one_line(two_adapters, monkeypatch, capsys, extra, fragment):
    status, _, err = run_main("generate", [*adapter_flags(two_adapters), *extra], monkeypatch, capsys)
    assert_one_line_error(status, err, fragment)


def test_an_adapter_for_another_base_is_refused_in_one_line(two_adapters, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    status, _, err = run_main("train_pretrain", ["--corpus", DATA / "pretrain.txt", "--probes", DATA / "pretrain_probes.json",
                                                 "--out", other, "--steps", "1", "--eval-interval", "1", "--seed", "5", *TINY_FLAGS],
                              monkeypatch, capsys)
    assert status == 0, err
    flags = adapter_flags(two_adapters)
    flags[1] = str(other)
    status, _, err = run_main("generate", flags, monkeypatch, capsys)
    assert_one_line_error(status, err, "trained on a different base model")
    # With no --adapter, the recorded adapters of another base are left out, and the output says so.
    status, out, err = run_main("generate", ["--pretrained", other, "--results", two_adapters["results"], "--max-new-tokens", "2"],
                                monkeypatch, capsys)
    assert status == 0, err
    assert "were trained on another base" in out
    assert {line.split()[0] for line in out.splitlines() if line.startswith("  ")} == {"base"}


def test_generate_with_no_adapter_flag_serves_every_adapter_the_results_record(two_adapters, monkeypatch, capsys):
    try:
        status, out, err = run_main("generate", ["--pretrained", two_adapters["pretrained"], "--results", two_adapters["results"],
                                                 "--prompt", "risotto is made with", "--max-new-tokens", "3", "--threads", "2"],
                                    monkeypatch, capsys)
    finally:
        threads_used, _ = torch.get_num_threads(), torch.set_num_threads(1)  # the suite runs on one thread
    assert status == 0, err
    assert threads_used == 2
    assert f"adapters recorded in {two_adapters['results']}: cooking" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  ")] == ["base", "cooking", "sport"]


def test_adapter_name_needs_the_lora_method(two_adapters, tmp_path, monkeypatch, capsys):
    status, _, err = run_main("train_finetune", ["--pretrained", two_adapters["pretrained"], "--out", tmp_path, "--method", "full",
                                                 "--adapter-name", "sport"], monkeypatch, capsys)
    assert_one_line_error(status, err, "--adapter-name 'sport' needs --method lora")


def test_compare_adapters_writes_the_table_and_timings(two_adapters, monkeypatch, capsys):
    results = two_adapters["results"]
    status, out, err = run_main("compare_adapters", [
        "--pretrained", two_adapters["pretrained"], "--adapter", f"cooking={results / 'lora_adapter'}", f"sport={results / 'adapters' / 'sport'}",
        "--domain", f"cooking={DATA / 'cooking.txt'}:{DATA / 'cooking_probes.json'}", f"sport={DATA / 'sport.txt'}:{DATA / 'sport_probes.json'}",
        "--pretrain-corpus", DATA / "pretrain.txt", "--pretrain-probes", DATA / "pretrain_probes.json",
        "--merged", results / "lora_merged", "--repeats", "2", "--out", results], monkeypatch, capsys)
    assert status == 0, err
    result = json.loads((results / "adapters_comparison.json").read_text())
    assert list(result["table"]) == ["base", "cooking", "sport", "mix cooking=0.5,sport=0.5", "cooking=0.5 alone", "sport=0.5 alone"]
    assert all(set(row) == {"pretraining", "cooking", "sport"} for row in result["table"].values())
    assert all(0 < row[d]["val_loss"] < 20 for row in result["table"].values() for d in row)
    assert set(result["switching_seconds"]) == {"swap_in_memory", "load_adapter_directory", "load_merged_model"}
    assert "ramen" in result["shared_words"]["sport"]


def test_compare_adapters_defaults_to_the_adapters_and_corpora_the_results_record(two_adapters, monkeypatch, capsys):
    results = two_adapters["results"]
    try:
        status, out, err = run_main("compare_adapters", ["--pretrained", two_adapters["pretrained"], "--results", results,
                                                         "--repeats", "1", "--threads", "2"], monkeypatch, capsys)
    finally:
        threads_used, _ = torch.get_num_threads(), torch.set_num_threads(1)  # the suite runs on one thread
    assert status == 0, err
    result = json.loads((results / "adapters_comparison.json").read_text())
    assert threads_used == result["torch_threads"] == 2  # --threads is applied, and recorded as applied
    assert list(result["table"]) == ["base", "cooking", "sport", "mix cooking=0.5,sport=0.5",  # cooking: lora_adapter's corpus
                                     "cooking=0.5 alone", "sport=0.5 alone"]
    assert set(result["table"]["base"]) == {"pretraining", "cooking", "sport"}
    assert result["table"]["cooking"]["sport"]["probe_accuracy"] is not None  # probes found beside each recorded corpus


@pytest.mark.parametrize("variant", ["rslora", "dora", "qlora"])
def test_generate_serves_each_variant_adapter_of_a_real_run(pipeline, monkeypatch, capsys, variant):
    adapter = pipeline["results"] / "variants" / variant / "adapter"
    status, out, err = run_main("generate", ["--pretrained", pipeline["pretrained"], "--adapter", f"v={adapter}",
                                             "--prompt", "the capital of france is", "--max-new-tokens", "4"], monkeypatch, capsys)
    assert status == 0, err
    assert "  v  " in out
