import json

import pytest

from conftest import FINETUNE_DATA_FLAGS, assert_one_line_error, run_main

PLOTS = ["parameter_counts.png", "loss_curves.png", "forgetting_vs_learning.png", "storage.png", "inference_latency.png"]


def test_compare_writes_every_promised_file(pipeline):
    out = pipeline["results"]
    for name in ["comparison.md", "comparison.json", *PLOTS]:
        assert (out / name).is_file(), name
    for plot in PLOTS:
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    markdown = (out / "comparison.md").read_text()
    assert "| LoRA (Q, K, V, O) |" in markdown and "Merge check" in markdown


def test_comparison_json_holds_every_figure_for_every_method(pipeline):
    comparison = json.loads((pipeline["results"] / "comparison.json").read_text())
    assert set(comparison["methods"]) == {"full", "freeze", "lora"}
    figures = ["trainable_parameters", "total_parameters", "trainable_percent", "trainable_state_bytes", "train_seconds",
               "tokens_per_second", "finetune_val_loss", "finetune_val_perplexity", "finetune_probe_accuracy",
               "pretrain_val_loss", "pretrain_probe_accuracy", "forgetting_val_loss_increase", "forgetting_probe_accuracy_drop"]
    for method in comparison["methods"].values():
        for figure in figures:
            assert isinstance(method[figure], (int, float)), figure
    assert set(comparison["storage"]) == {"full_finetune", "layer_freezing", "lora_merged", "lora_adapter"}
    assert all(s["tensor_bytes"] <= s["file_bytes"] for s in comparison["storage"].values())
    assert set(comparison["inference_latency"]) == {"base", "LoRA unmerged", "LoRA merged"}
    assert all(len(per_model) == 5 for per_model in comparison["generations"].values())
    for matrix in comparison["lora_per_matrix"]:
        assert matrix["lora"] == 4 * (matrix["in"] + matrix["out"]) and matrix["full"] == matrix["in"] * matrix["out"]


def test_the_reported_merge_check_is_below_1e_5(pipeline):
    comparison = json.loads((pipeline["results"] / "comparison.json").read_text())
    assert 0.0 <= comparison["merge_check_max_abs_logit_difference"] < 1e-5


def test_compare_gives_the_same_figures_twice(pipeline, monkeypatch, capsys):
    first = json.loads((pipeline["results"] / "comparison.json").read_text())
    args = ["--pretrained", pipeline["pretrained"], "--results", pipeline["results"], *FINETUNE_DATA_FLAGS,
            "--latency-tokens", "2", "--latency-repeats", "1"]
    assert run_main("compare", args, monkeypatch, capsys)[0] == 0
    second = json.loads((pipeline["results"] / "comparison.json").read_text())
    for data in (first, second):
        data.pop("inference_latency")
        for method in data["methods"].values():  # training timings are copied from metrics.json, so equal anyway
            method.pop("train_seconds"), method.pop("tokens_per_second")
    assert first == second


def test_compare_before_finetuning_says_which_script_to_run(pipeline, tmp_path, monkeypatch, capsys):
    status, _, err = run_main("compare", ["--pretrained", pipeline["pretrained"], "--results", tmp_path / "empty"], monkeypatch, capsys)
    assert_one_line_error(status, err, "run python train_finetune.py first")


def test_compare_before_pretraining_says_which_script_to_run(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("compare", ["--pretrained", tmp_path / "none"], monkeypatch, capsys)
    assert_one_line_error(status, err, "run python train_pretrain.py first")


def test_a_damaged_metrics_file_is_a_one_line_error(pipeline, tmp_path, monkeypatch, capsys):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(pipeline["results"], copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    del metrics["methods"]["lora"]["trainable_state_bytes"]
    wrong_type = json.loads((pipeline["results"] / "metrics.json").read_text())
    wrong_type["methods"]["lora"]["parameters"] = []
    for damaged, fragment in ((metrics, "missing 'trainable_state_bytes'"), ({**metrics, "methods": None}, 'no "methods" object'),
                              ("{not json", "metrics.json is corrupted"), (wrong_type, "a field has the wrong type")):
        (copy / "metrics.json").write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
        status, _, err = run_main("compare", ["--pretrained", pipeline["pretrained"], "--results", copy, *FINETUNE_DATA_FLAGS],
                                  monkeypatch, capsys)
        assert_one_line_error(status, err, "metrics.json is corrupted", fragment)
        assert "NoneType" not in err and "list indices" not in err  # a sentence, not Python's words


def test_a_tampered_variants_section_or_a_variant_from_another_run_is_one_line(pipeline, tmp_path, monkeypatch, capsys):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(pipeline["results"], copy)
    original = (copy / "metrics.json").read_text()
    for tamper, fragment in ((lambda m: m["variants"]["dora"].update(history="x"), "variants"),
                             (lambda m: m["variants"].update(mystery={}), "variants")):
        metrics = json.loads(original)
        tamper(metrics)
        (copy / "metrics.json").write_text(json.dumps(metrics))
        status, _, err = run_main("compare", ["--pretrained", pipeline["pretrained"], "--results", copy], monkeypatch, capsys)
        assert_one_line_error(status, err, "metrics.json is corrupted", fragment)
    (copy / "metrics.json").write_text(original)
    run_file = copy / "variants" / "dora" / "adapter" / "run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "run_id": "another-run"}))
    status, _, err = run_main("compare", ["--pretrained", pipeline["pretrained"], "--results", copy], monkeypatch, capsys)
    assert_one_line_error(status, err, "mix runs", "variants/dora/adapter/", "--method variants")


def test_a_results_folder_it_cannot_write_names_results_not_out(tmp_path, monkeypatch, capsys):
    from minigpt.plumbing.atomic_writes import atomic_write_text
    from minigpt.plumbing.errors import UserError

    status, _, err = run_main("compare", ["--results", "/proc/x"], monkeypatch, capsys)
    assert_one_line_error(status, err, "/proc", "pass that as --results")  # compare.py has no --out
    with pytest.raises(UserError, match="choose another --out"):  # the next writer in this process: the default again
        atomic_write_text("/proc/x/notes.txt", "")
