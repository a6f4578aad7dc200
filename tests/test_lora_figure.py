"""draw_lora_figure.py draws the shapes the code really has, writes a PNG, and refuses a layer or rank that does not exist."""

from conftest import assert_one_line_error, run_main

import draw_lora_figure
from lora.config import DEFAULT_TARGETS, LoRAConfig
from minigpt.config import GPTConfig


def test_the_drawn_shapes_are_the_default_models_and_the_targets_are_lora_configs():
    config = GPTConfig()
    shapes = draw_lora_figure.linear_shapes()
    assert draw_lora_figure.layer_shape(shapes, "q_proj") == (config.n_embd, config.n_embd)
    assert draw_lora_figure.layer_shape(shapes, "up_proj")[0] != config.n_embd  # a non-square layer: shapes really come from the model
    targets = [name for name in shapes if name.rpartition(".")[2] in LoRAConfig().target_modules]
    assert len(targets) == config.n_layer * len(DEFAULT_TARGETS)


def test_the_script_writes_a_png_and_says_what_it_drew(tmp_path, monkeypatch, capsys):
    out = tmp_path / "diagram.png"
    status, printed, _ = run_main("draw_lora_figure", ["--out", str(out), "--rank", "8"], monkeypatch, capsys)
    assert status == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "LoRA at r = 8 trains 1,024 (25.0%)" in printed  # 8 x (64 + 64) of 64 x 64
    assert not list(tmp_path.glob(".*.tmp")), "written atomically: no temporary file left"


def test_an_unknown_layer_or_a_rank_too_large_is_one_line(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("draw_lora_figure", ["--out", str(tmp_path / "x.png"), "--layer", "qproj"], monkeypatch, capsys)
    assert_one_line_error(status, err, "qproj", "q_proj")
    status, _, err = run_main("draw_lora_figure", ["--out", str(tmp_path / "x.png"), "--rank", "65"], monkeypatch, capsys)
    assert_one_line_error(status, err, "--rank 65", "from 1 to 64")
    assert not (tmp_path / "x.png").exists()
