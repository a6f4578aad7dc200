"""The studies' plots say how many seeds each point is: "one seed" and no error bars for single runs,
"mean over N seeds" and min-max bars otherwise, so a plot never shows a spread that was not measured."""

import pytest
from matplotlib.collections import LineCollection

from experiment.studies import study_plots


def summary(mean: float, spread: float) -> dict:
    return {"mean": mean, "min": mean - spread, "max": mean + spread}


def group(label: str, runs: int, rank: int = 4, alpha: float = 8.0) -> dict:
    spread = 0.0 if runs == 1 else 0.1
    return {"label": label, "runs": runs, "settings": {"rank": rank, "alpha": alpha, "rslora": False},
            "new_val_loss": summary(2.0, spread), "new_probes": summary(80.0, 5 * spread),
            "old_val_loss": summary(4.0, spread), "old_probes": summary(8.0, 5 * spread),
            "delta_norm": summary(30.0, spread), "trainable_parameters": summary(11584, 0.0)}


@pytest.fixture
def saved_figures(monkeypatch):
    figures = []
    monkeypatch.setattr(study_plots, "atomic_save_figure", lambda figure, path: figures.append(figure))
    return figures


def draw(kind: str, runs: int, saved_figures):
    groups = {str(i): group(f"LoRA r={rank}", runs, rank) for i, rank in enumerate((1, 4, 16))}
    {"seeds": study_plots.plot_seed_bars, "rank": study_plots.plot_rank, "targets": study_plots.plot_targets}[kind](groups, "unused.png")
    figure = saved_figures[-1]
    has_error_bars = any(isinstance(c, LineCollection) for ax in figure.axes for c in ax.collections)
    return figure._suptitle.get_text(), has_error_bars


@pytest.mark.parametrize("kind", ["seeds", "rank", "targets"])
def test_a_one_seed_plot_says_one_seed_and_draws_no_error_bars(kind, saved_figures):
    title, has_error_bars = draw(kind, 1, saved_figures)
    assert "one seed" in title and "mean over" not in title and "min-max" not in title
    assert not has_error_bars


def test_a_three_seed_plot_says_mean_over_three_seeds_with_min_max_bars(saved_figures):
    title, has_error_bars = draw("targets", 3, saved_figures)
    assert "mean over 3 seeds" in title and "min-max" in title and "one seed" not in title
    assert has_error_bars


def test_the_caption_names_the_seed_count_or_its_range():
    assert study_plots.seeds_caption([{"runs": 3}, {"runs": 3}]) == "mean over 3 seeds; error bars: min-max"
    assert study_plots.seeds_caption([{"runs": 1}, {"runs": 3}]) == "mean over 1-3 seeds; error bars: min-max"


def test_equal_values_whose_mean_rounds_past_the_max_still_plot(saved_figures):
    groups = {"0": group("LoRA r=4", 3)}
    groups["0"]["old_probes"] = {"mean": sum([0.1, 0.1, 0.1]) / 3, "min": 0.1, "max": 0.1}  # 0.10000000000000002
    study_plots.plot_seed_bars(groups, "unused.png")  # matplotlib refuses negative error bars
    assert saved_figures


@pytest.mark.parametrize("seeds, caption", [((1337,), "one seed per point"), ((1, 2, 3), "means over 3 seeds")])
def test_the_replay_plot_says_how_many_seeds_its_lines_join(seeds, caption, saved_figures):
    records = [{"label": label, "settings": {"replay": fraction, "seed": seed},
                "new_val_loss": 1.0 + fraction, "new_probes": 90.0, "old_val_loss": 4.0 - fraction, "old_probes": 10 + fraction}
               for label in ("full fine-tuning", "LoRA r=4") for fraction in (0.0, 0.1, 0.25) for seed in seeds]
    study_plots.plot_pareto(records, "unused.png", "Replay", by_replay=True)
    title = saved_figures[-1]._suptitle.get_text()
    assert caption in title and ("one seed" in title) == (len(seeds) == 1)


def test_the_targets_plot_names_the_default_targets_that_run_labels_leave_out(saved_figures):
    default, mlp, one = group("LoRA r=4", 3), group("LoRA r=4 up+down", 3), group("LoRA r=4 v", 3)
    default["settings"]["targets"] = ["q_proj", "k_proj", "v_proj", "o_proj"]  # a list, as results.json stores it
    mlp["settings"]["targets"], one["settings"]["targets"] = ["up_proj", "down_proj"], ["v_proj"]
    study_plots.plot_targets({"0": default, "1": mlp, "2": one}, "unused.png")
    names = [tick.get_text().split("\n")[0] for tick in saved_figures[-1].axes[0].get_xticklabels()]
    assert names == ["r=4 q+k+v+o (default)", "r=4 up+down", "r=4 v"]
