"""The LoRA variants inside the experiment: config, training, adapter round trip, merge, flags, compare rows."""

import json

import pytest
import torch

from conftest import FINETUNE_DATA_FLAGS, assert_one_line_error, run_main, tiny_model
from experiment.training.adapter import load_adapter, save_adapter
from experiment.training.methods import merge_lora_model, prepare_lora
from experiment.training.variants import VARIANTS, variant_config, variant_prefix
from lora import DoRALinear, LoRAConfig, LoRAError, NF4Linear, apply_lora, lora_layers, lora_state_dict
from minigpt.checkpoint import model_fingerprint, save_model_dir
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer
from minigpt.training import TrainConfig, train

BASE_WORDS = ["<pad>", "<unk>", "<eot>"] + [f"w{i}" for i in range(47)]
VARIANT_CONFIGS = {
    "rslora": dict(use_rslora=True),
    "loraplus": dict(loraplus_lr_ratio=16.0),
    "dora": dict(use_dora=True),
    "qlora": dict(quantize_base="targets", quant_block_size=16),
    "qlora_all_dora": dict(quantize_base="all", quant_block_size=16, use_dora=True),
}


def trained_variant(config: LoRAConfig, steps: int = 3):
    """A tiny MiniGPT with 3 new words, the variant applied, trained a few real steps with the shared loop."""
    model = tiny_model(vocab_size=50)
    model.resize_token_embeddings(53)
    prepare_lora(model, 50, config)
    torch.manual_seed(0)
    data = torch.randint(53, (400,))
    groups = None
    if config.loraplus_lr_ratio:
        from lora import loraplus_parameter_groups
        groups = lambda m: loraplus_parameter_groups(m, 1e-2, config.loraplus_lr_ratio)  # noqa: E731
    train(model, data, data, TrainConfig(steps=steps, batch_size=4, lr=1e-2, warmup_steps=1, eval_interval=steps),
          "cpu", show_progress=False, parameter_groups=groups)
    return model.eval()


def test_rslora_scales_by_alpha_over_sqrt_r_in_the_config_and_in_every_layer():
    for r, alpha in [(1, 1.0), (4, 8.0), (16, 8.0)]:
        config = LoRAConfig(r=r, lora_alpha=alpha, use_rslora=True, target_modules=["v_proj"])
        assert config.scaling == pytest.approx(alpha / r ** 0.5)
        model = tiny_model()
        layers = apply_lora(model, config)
        assert all(layer.scaling == pytest.approx(alpha / r ** 0.5) for layer in layers.values())


@pytest.mark.parametrize("name", list(VARIANT_CONFIGS))
def test_a_trained_variant_adapter_round_trips_and_merges(name, tmp_path):
    config = LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], **VARIANT_CONFIGS[name])
    base, tokenizer = tiny_model(vocab_size=50), WordTokenizer(BASE_WORDS)
    save_model_dir(tmp_path / "base", base, tokenizer)
    extended = tokenizer.copy()
    extended.extend(["risotto", "saffron", "miso"])
    trained = trained_variant(config)
    assert any(layer.lora_B.weight.abs().sum() > 0 for layer in lora_layers(trained).values())
    save_adapter(tmp_path / "adapter", trained, config, extended, model_fingerprint(base), 50)

    loaded, _, loaded_config = load_adapter(tmp_path / "adapter", tmp_path / "base")
    assert loaded_config == config  # every variant field recorded in lora_config.json
    idx = torch.randint(53, (3, 12))
    assert torch.equal(loaded(idx)[0], trained(idx)[0])
    merged = merge_lora_model(trained)
    assert not any(isinstance(m, NF4Linear) for m in merged.modules())
    assert (merged(idx)[0] - trained(idx)[0]).abs().max().item() < 1e-5

    save_model_dir(tmp_path / "other", tiny_model(vocab_size=50, seed=7), tokenizer)
    with pytest.raises(UserError, match="trained on a different base model"):
        load_adapter(tmp_path / "adapter", tmp_path / "other")


@pytest.mark.parametrize("name", ["rslora", "loraplus", "dora"])
def test_training_a_variant_leaves_every_base_weight_bit_identical(name):
    config = LoRAConfig(r=2, lora_alpha=4, **VARIANT_CONFIGS[name])
    original = tiny_model(vocab_size=50).state_dict()
    trained = trained_variant(config)
    base_weights = {key.replace(".base.", "."): value for key, value in trained.state_dict().items()
                    if "lora_" not in key and "token_embedding" not in key and "lm_head" not in key}
    assert base_weights and all(torch.equal(original[key], value) for key, value in base_weights.items())


def test_dora_saves_its_magnitude_with_a_and_b():
    model = tiny_model()
    apply_lora(model, LoRAConfig(r=2, lora_alpha=4, use_dora=True, target_modules=["v_proj"]))
    keys = set(lora_state_dict(model))
    assert keys == {f"blocks.{i}.attention.v_proj.{p}" for i in range(2) for p in ("lora_A.weight", "lora_B.weight", "lora_magnitude")}
    assert all(isinstance(m, DoRALinear) for m in lora_layers(model).values())


def test_qlora_keeps_the_4_bit_codes_bit_identical_through_training():
    config = LoRAConfig(r=2, lora_alpha=4, quantize_base="all", quant_block_size=16)
    model = tiny_model(vocab_size=50)
    model.resize_token_embeddings(53)
    prepare_lora(model, 50, config)
    codes = {name: buffer.clone() for name, buffer in model.named_buffers() if name.endswith("codes")}
    assert any("up_proj" in name for name in codes)  # "all": the MLP is stored in 4 bits too
    data = torch.randint(53, (400,))
    train(model, data, data, TrainConfig(steps=3, batch_size=4, lr=1e-2, warmup_steps=1, eval_interval=3), "cpu", show_progress=False)
    assert all(torch.equal(codes[name], buffer) for name, buffer in model.named_buffers() if name in codes)


def test_a_qlora_block_size_that_does_not_divide_a_weight_is_an_error():
    with pytest.raises(LoRAError, match="block size 24 does not divide"):
        apply_lora(tiny_model(), LoRAConfig(r=2, lora_alpha=4, quantize_base="targets", quant_block_size=24))


def test_loraplus_groups_keep_their_ratio_through_the_learning_rate_schedule():
    """With A's group at lr 0 and B's at lr * ratio, one step must move B and leave A exactly where it was."""
    model = tiny_model()
    apply_lora(model, LoRAConfig(r=2, lora_alpha=4, target_modules=["v_proj"]))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.normal_()
    a_before = {n: p.clone() for n, p in model.named_parameters() if "lora_A" in n}
    b_before = {n: p.clone() for n, p in model.named_parameters() if "lora_B" in n}

    def groups(m):
        named = dict(m.named_parameters())
        return [{"params": [named[n] for n in a_before], "lr": 0.0}, {"params": [named[n] for n in b_before], "lr": 16e-3}]
    data = torch.randint(50, (400,))
    train(model, data, data, TrainConfig(steps=1, batch_size=4, lr=1e-3, warmup_steps=1, eval_interval=1), "cpu",
          show_progress=False, parameter_groups=groups)
    named = dict(model.named_parameters())
    assert all(torch.equal(named[n], p) for n, p in a_before.items())
    moved = max((named[n] - p).abs().max().item() for n, p in b_before.items())
    assert moved == pytest.approx(16e-3, rel=0.05)  # Adam's first step moves each element by about its lr


@pytest.mark.parametrize("flags, fragment", [
    (["--method", "full", "--use-dora"], "--use-dora changes LoRA only"),
    (["--method", "variants", "--use-rslora"], "--method variants trains every variant"),
    (["--method", "lora", "--quant-block-size", "32"], "apply to QLoRA only"),
    (["--method", "lora", "--loraplus-lr-ratio", "0"], "--loraplus-lr-ratio"),
    (["--method", "lora", "--quantize-base", "targets", "--quant-block-size", "24"], "does not divide"),
])
def test_variant_flag_mistakes_are_one_line_errors(pipeline, flags, fragment, monkeypatch, capsys, tmp_path):
    status, _, err = run_main("train_finetune", ["--pretrained", pipeline["pretrained"], "--out", tmp_path / "out",
                                                 *FINETUNE_DATA_FLAGS, "--steps", "1", "--no-progress", *flags], monkeypatch, capsys)
    assert_one_line_error(status, err, fragment)
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("changes, expected", [
    ({}, "LoRA"),
    ({"loraplus_lr_ratio": 16.0}, "LoRA+ ratio 16"),
    ({"loraplus_lr_ratio": 4.0}, "LoRA+ ratio 4"),  # any ratio is LoRA+, not only the default 16
    ({"loraplus_lr_ratio": 2.5, "use_rslora": True}, "rsLoRA + LoRA+ ratio 2.5"),
    ({"quantize_base": "all", "use_dora": True}, "DoRA + QLoRA"),
])
def test_every_variant_setting_is_named_in_the_label(changes, expected):
    assert variant_prefix(LoRAConfig(**changes).validate()) == expected


def test_the_variants_table_prefixes_are_what_their_configs_are_labelled():
    for name, (_, prefix) in VARIANTS.items():
        assert variant_prefix(variant_config(LoRAConfig(), name)) == prefix


def test_the_variants_run_writes_each_variant_and_compare_reports_it(pipeline):
    metrics = json.loads((pipeline["results"] / "metrics.json").read_text())
    assert list(metrics["variants"]) == ["rslora", "loraplus", "dora", "qlora"]
    assert list(metrics["methods"]) == ["full", "freeze", "lora"]  # kept from the earlier --method all run
    for name in metrics["variants"]:
        folder = pipeline["results"] / "variants" / name
        assert sorted(p.name for p in folder.iterdir()) == ["adapter", "merged"]
    comparison = json.loads((pipeline["results"] / "comparison.json").read_text())
    labels = [v["label"] for v in comparison["variants"].values()]
    assert labels == ["rsLoRA (Q, K, V, O)", "LoRA+ ratio 16 (Q, K, V, O)", "DoRA (Q, K, V, O)", "QLoRA (Q, K, V, O)"]
    checks = {name: v["merge_check_max_abs_logit_difference"] for name, v in comparison["variants"].items()}
    assert all(0.0 <= check < 1e-4 for check in checks.values()), checks  # float32 rounding, never a wrong merge (~1)
    quantization = comparison["variants"]["qlora"]["quantization"]
    assert quantization["nf4_bytes"] < quantization["float32_bytes"] / 4
    assert 0 < quantization["relative_weight_error"] < 0.2
    assert "QLoRA (Q, K, V, O)" in (pipeline["results"] / "comparison.md").read_text()
