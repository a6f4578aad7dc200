"""experiments.py on a tiny model and grid: tables and plots written, runs cached, resumed after an interrupt, bad input."""

import json

import pytest

import experiment.studies.runner as runner
from conftest import FINETUNE_DATA_FLAGS, assert_one_line_error, run_main

TINY_RUN = ["--steps", "2", "--batch-size", "4", "--no-progress"]


def study_flags(pipeline, out):
    return ["--pretrained", pipeline["pretrained"], "--results", pipeline["results"], "--out", out, *FINETUNE_DATA_FLAGS, *TINY_RUN]


def counting_run_one(monkeypatch, fail_at=None):
    """Replace run_one by a wrapper that counts real runs (and raises Ctrl-C on call number fail_at)."""
    calls, real = [], runner.run_one

    def run_one(settings, context):
        calls.append(settings)
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(settings, context)

    monkeypatch.setattr(runner, "run_one", run_one)
    return calls


def test_seeds_study_writes_its_table_json_and_plot_with_the_new_rows_control(pipeline, tmp_path, monkeypatch, capsys):
    calls = counting_run_one(monkeypatch)
    status, out, err = run_main("experiments", ["seeds", "--seeds", "1,2", *study_flags(pipeline, tmp_path)], monkeypatch, capsys)
    assert status == 0, err
    directory = tmp_path / "seeds"
    results = json.loads((directory / "results.json").read_text())
    assert len(calls) == len(results["runs"]) == 8  # full, freeze, lora, rows x 2 seeds
    assert {run["settings"]["method"] for run in results["runs"]} == {"full", "freeze", "lora", "rows"}
    rows = next(g for g in results["groups"].values() if g["settings"]["method"] == "rows")
    full = next(g for g in results["groups"].values() if g["settings"]["method"] == "full")
    assert rows["runs"] == 2 and rows["trainable_parameters"]["mean"] < full["trainable_parameters"]["mean"]
    assert rows["new_val_loss"]["min"] <= rows["new_val_loss"]["mean"] <= rows["new_val_loss"]["max"]
    assert (directory / "seeds.png").stat().st_size > 10_000
    assert "| new rows only, lr 0.01 | 2 |" in (directory / "results.md").read_text()
    assert "new rows only" in out


def test_a_finished_study_rereads_every_run_from_the_cache(pipeline, tmp_path, monkeypatch, capsys):
    flags = ["targets", "--seeds", "3", *study_flags(pipeline, tmp_path)]
    assert run_main("experiments", flags, monkeypatch, capsys)[0] == 0
    first = json.loads((tmp_path / "targets" / "results.json").read_text())
    calls = counting_run_one(monkeypatch)
    assert run_main("experiments", flags, monkeypatch, capsys)[0] == 0
    assert calls == []
    assert json.loads((tmp_path / "targets" / "results.json").read_text())["runs"] == first["runs"]


def test_an_interrupted_study_resumes_with_only_the_runs_it_had_not_finished(pipeline, tmp_path, monkeypatch, capsys):
    flags = ["replay", "--seeds", "5", *study_flags(pipeline, tmp_path)]
    calls = counting_run_one(monkeypatch, fail_at=3)
    status, _, err = run_main("experiments", flags, monkeypatch, capsys)
    assert status == 130 and "interrupted" in err
    assert len(list((tmp_path / "replay" / "runs").glob("*.json"))) == 2
    calls = counting_run_one(monkeypatch)
    assert run_main("experiments", flags, monkeypatch, capsys)[0] == 0
    assert len(calls) == 7  # 9 runs in the quick replay grid (3 methods x 3 fractions), 2 already cached
    results = json.loads((tmp_path / "replay" / "results.json").read_text())
    assert sorted({run["settings"]["replay"] for run in results["runs"]}) == [0.0, 0.1, 0.25]
    assert (tmp_path / "replay" / "replay.png").is_file()


def test_the_rank_study_skips_ranks_wider_than_the_model(pipeline, tmp_path, monkeypatch, capsys):
    calls = counting_run_one(monkeypatch)
    status, out, err = run_main("experiments", ["rank", "--ranks", "2,64", "--seeds", "1", *study_flags(pipeline, tmp_path)],
                                monkeypatch, capsys)
    assert status == 0, err
    assert "ranks above the model's width (16) are skipped" in out
    assert {settings.rank for settings in calls} == {2}
    assert {settings.alpha for settings in calls} >= {8.0, 4.0}  # alpha fixed and alpha = 2r


def test_the_cache_key_depends_on_what_changes_the_run_and_nothing_else():
    from types import SimpleNamespace
    key = lambda settings, fingerprint="base-a": runner.StudyContext.key(SimpleNamespace(fingerprint=fingerprint), settings)  # noqa: E731
    full = runner.RunSettings("full", seed=1)
    assert key(full) == key(runner.RunSettings("full", seed=1, lr=runner.STUDY_METHODS["full"].lr))  # the default, spelt out
    assert key(full) == key(runner.RunSettings("full", seed=1, rank=16))  # rank means nothing without LoRA
    assert key(full) != key(runner.RunSettings("full", seed=2))
    assert key(full) != key(runner.RunSettings("full", seed=1, replay=0.1))
    assert key(full) != key(full, fingerprint="base-b")
    assert key(runner.RunSettings("lora", rank=4)) != key(runner.RunSettings("lora", rank=8))


def test_intrinsic_rank_study_reads_the_saved_models_and_writes_table_and_spectra(pipeline, tmp_path, monkeypatch, capsys):
    status, out, err = run_main("experiments", ["intrinsic-rank", *study_flags(pipeline, tmp_path)], monkeypatch, capsys)
    assert status == 0, err
    report = json.loads((tmp_path / "intrinsic-rank" / "results.json").read_text())
    lora = report["methods"]["LoRA (merged)"]
    assert all(s["numerical_rank"] <= 4 for name, s in lora.items() if "attention" in name)  # B A has rank <= r = 4
    assert all(s["norm"] == 0 for name, s in lora.items() if "feed_forward" in name)  # LoRA never touched the MLP
    assert (tmp_path / "intrinsic-rank" / "spectra.png").is_file()


@pytest.mark.parametrize("args, fragments", [
    (["sweep"], ("unknown study 'sweep'", "seeds")),
    (["seeds", "--seeds", ","], ("--seeds is empty",)),
    (["rank", "--ranks", ","], ("--ranks is empty",)),
    (["seeds", "--ranks", "2"], ("--ranks applies to the rank study only",)),
])
def test_bad_study_input_ends_in_one_line(pipeline, tmp_path, monkeypatch, capsys, args, fragments):
    status, _, err = run_main("experiments", [*args, *study_flags(pipeline, tmp_path)], monkeypatch, capsys)
    assert_one_line_error(status, err, *fragments)


def test_a_missing_pretrained_model_ends_in_one_line(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("experiments", ["seeds", "--pretrained", tmp_path / "nothing", "--out", tmp_path], monkeypatch, capsys)
    assert_one_line_error(status, err, "does not exist", "train_pretrain.py")


def test_intrinsic_rank_without_fine_tuned_models_ends_in_one_line(pipeline, tmp_path, monkeypatch, capsys):
    status, _, err = run_main("experiments", ["intrinsic-rank", "--pretrained", pipeline["pretrained"], "--results", tmp_path,
                                              "--out", tmp_path], monkeypatch, capsys)
    assert_one_line_error(status, err, "train_finetune.py")


def test_overhead_study_counts_more_operations_but_little_more_arithmetic_unmerged(pipeline, tmp_path, monkeypatch, capsys):
    status, _, err = run_main("experiments", ["overhead", "--pretrained", pipeline["pretrained"], "--out", tmp_path], monkeypatch, capsys)
    assert status == 0, err
    report = json.loads((tmp_path / "overhead" / "results.json").read_text())
    base, unmerged, merged = report["base"], report["LoRA unmerged"], report["LoRA merged"]
    assert unmerged["operations"] >= base["operations"] + 4 * 8  # 2 blocks x 4 adapted layers x (A, B, scale, add)
    assert merged["operations"] == base["operations"] and merged["multiply_adds_per_token"] == base["multiply_adds_per_token"]
    assert unmerged["multiply_adds_per_token"] - base["multiply_adds_per_token"] == 2 * 4 * 4 * (16 + 16)
