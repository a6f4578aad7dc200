"""train_finetune.py --method for each method beside LoRA, and compare.py's rows for them, on the tiny pipeline."""

import json
import shutil

import pytest
import torch

from conftest import FINETUNE_DATA_FLAGS, assert_one_line_error, run_main
from experiment.training.other_methods.result_directory import load_result
from minigpt.checkpoint import load_model_dir, model_fingerprint, save_model_dir

OTHERS = ["adapters", "prefix", "prompt", "bitfit", "ia3"]


@pytest.fixture(scope="module")
def others(pipeline, tmp_path_factory):
    """The default tiny results copied, then --method others (the same 8 steps, so the default records are kept) and compare.py."""
    results = tmp_path_factory.mktemp("others") / "results"
    shutil.copytree(pipeline["results"], results)
    common = ["--pretrained", pipeline["pretrained"], *FINETUNE_DATA_FLAGS, "--no-progress"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        capsys = _Capture()
        status, out, err = run_main("train_finetune", ["--method", "others", "--out", results, "--steps", "8", "--eval-interval", "4",
                                                       "--batch-size", "8", "--num-virtual-tokens", "4", *common], monkeypatch, capsys)
        assert status == 0, err
        status, compare_out, err = run_main("compare", ["--results", results, "--latency-tokens", "2", "--latency-repeats", "1", *common],
                                            monkeypatch, capsys)
        assert status == 0, err
    return {"results": results, "pretrained": pipeline["pretrained"], "out": out, "compare_out": compare_out}


class _Capture:
    """capsys for a module-scoped fixture: run_main only calls readouterr()."""

    def readouterr(self):
        class Captured:
            out, err = "", ""
        return Captured()


def test_each_method_saves_its_small_result_and_bitfit_and_ia3_a_merged_model(others):
    metrics = json.loads((others["results"] / "metrics.json").read_text())
    assert list(metrics["other_methods"]) == OTHERS
    assert list(metrics["methods"]) == ["full", "freeze", "lora"]  # the earlier default run is kept
    for name in OTHERS:
        folder = others["results"] / "other_methods" / name
        assert sorted(p.name for p in (folder / "result").iterdir()) == [
            "embedding_weights.pt", "method_config.json", "method_weights.pt", "run.json", "tokenizer.json"]
        assert (folder / "merged").is_dir() == (name in ("bitfit", "ia3"))
        assert json.loads((folder / "result" / "run.json").read_text())["run_id"] == metrics["other_methods"][name]["run_id"]
        record = metrics["other_methods"][name]
        # the docstring's formula plus the new words' rows (16 wide), trained as for every method
        assert record["parameters"]["trainable"] == record[name]["formula_parameters"] + 16 * len(metrics["new_words"])
        assert record[name]["base_tensors_changed"] == [] or name == "bitfit"


def test_compare_reports_context_latency_base_and_swap_for_each_method(others):
    comparison = json.loads((others["results"] / "comparison.json").read_text())
    rows = comparison["other_methods"]["rows"]
    assert list(rows) == OTHERS
    block = 16  # the tiny pipeline's context
    assert {name: r["context_positions_left"] for name, r in rows.items()} == {
        "adapters": block, "prefix": block - 4, "prompt": block - 4, "bitfit": block, "ia3": block}
    assert rows["ia3"]["merge_check_max_abs_logit_difference"] < 1e-4 and rows["bitfit"]["merge_check_max_abs_logit_difference"] < 1e-4
    assert all(r["ms_per_token_kv_cache"] > 0 for r in rows.values())
    assert [n for n, r in rows.items() if not r["swappable_on_one_base"]] == ["bitfit"]
    assert "Methods beside LoRA" in (others["results"] / "comparison.md").read_text()


def test_a_saved_result_loads_onto_its_base_and_gives_the_trained_models_outputs(others):
    metrics = json.loads((others["results"] / "metrics.json").read_text())
    model, tokenizer, _ = load_result(others["results"] / "other_methods" / "prefix" / "result", others["pretrained"], "prefix")
    ids = torch.tensor([tokenizer.encode("risotto is made with")])
    assert model(ids)[0].shape[-1] == len(tokenizer.id_to_token)
    measured = json.loads((others["results"] / "comparison.json").read_text())["other_methods"]["rows"]["prefix"]
    assert measured["finetune_val_loss"] == pytest.approx(metrics["other_methods"]["prefix"]["after"]["finetune_val_loss"], abs=1e-4)


def test_a_result_for_another_base_is_refused_in_one_line(others, tmp_path, monkeypatch, capsys):
    base, tokenizer = load_model_dir(others["pretrained"])
    with torch.no_grad():
        base.final_norm.bias.add_(1.0)  # same shapes, other weights: another base
    other = tmp_path / "other_base"
    save_model_dir(other, base, tokenizer)
    assert model_fingerprint(base) != model_fingerprint(load_model_dir(others["pretrained"])[0])
    status, _, err = run_main("compare", ["--results", others["results"], "--pretrained", other, *FINETUNE_DATA_FLAGS,
                                          "--no-progress"], monkeypatch, capsys)
    assert_one_line_error(status, err, "another base")
    from minigpt.plumbing.errors import UserError
    with pytest.raises(UserError, match="trained on a different base model"):
        load_result(others["results"] / "other_methods" / "ia3" / "result", other, "ia3")


@pytest.mark.parametrize("flags, message", [
    (["--method", "prefix", "--num-virtual-tokens", "16"], "leaves no position for text"),
    (["--method", "prompt", "--num-virtual-tokens", "0"], "num_virtual_tokens must be at least 1"),
    (["--method", "adapters", "--adapter-size", "0"], "adapter_size must be a positive integer"),
    (["--method", "ia3", "--ia3-targets", "key"], "feedforward_modules ['down_proj'] must also be in target_modules"),
    (["--method", "adapters", "--adapter-targets", "o_proj,attn_out"], "'attn_out' matches no Linear"),
    (["--method", "bitfit", "--use-dora"], "--method bitfit trains no LoRA"),
])
def test_bad_settings_for_each_method_end_in_one_line_before_training(pipeline, tmp_path, monkeypatch, capsys, flags, message):
    status, _, err = run_main("train_finetune", ["--pretrained", pipeline["pretrained"], "--out", tmp_path / "out",
                                                 *FINETUNE_DATA_FLAGS, "--no-progress", *flags], monkeypatch, capsys)
    assert_one_line_error(status, err, message)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_the_methods_study_runs_every_method_at_its_default_over_the_seeds_and_the_grid_at_the_first_seed():
    from experiment.studies.catalog import OTHER_METHOD_RATES, methods_grid
    from experiment.studies.runner import STUDY_METHODS

    grid = methods_grid((1337, 1, 2), full=False)
    for method in ["full", "freeze", "lora", *OTHERS]:
        assert {s.seed for s in grid if s.method == method and s.lr is None} == {1337, 1, 2}
    for method, rates in OTHER_METHOD_RATES.items():
        assert {s.lr for s in grid if s.method == method and s.lr is not None} == set(rates)
        assert {s.seed for s in grid if s.method == method and s.lr is not None} == {1337}
        assert STUDY_METHODS[method].lr in rates  # the default is one of the grid's rates, so its first-seed run is shared


def test_a_run_asked_for_twice_by_the_default_rate_and_by_the_same_rate_counts_once(tmp_path):
    from experiment.studies.runner import FIGURES, RunSettings, run_grid

    class Context:  # what run_grid needs: a cache directory and a key per settings; the run itself is cached already
        out = tmp_path

        @staticmethod
        def key(settings):
            return "same-run"

    (tmp_path / "methods" / "runs").mkdir(parents=True)
    record = {"settings": RunSettings("ia3", 1337).canonical(), "label": "IA3", **{name: 1.0 for name, _ in FIGURES}}  # a complete cached run
    (tmp_path / "methods" / "runs" / "same-run.json").write_text(json.dumps(record))
    grid = [RunSettings("ia3", 1337), RunSettings("ia3", 1337, lr=RunSettings("ia3", 1337).learning_rate)]
    assert run_grid("methods", grid, Context, show_progress=False) == [record]
