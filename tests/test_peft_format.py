"""experiment/serving/peft_format.py: the adapter in PEFT's layout, back again, and (if peft is installed) loaded by PEFT."""

import json

import pytest
import torch

from conftest import assert_one_line_error, run_main, tiny_model
from experiment.training.adapter import load_adapter, save_adapter
from experiment.training.methods import prepare_lora
from experiment.serving.peft_format import PEFT_BIN, PEFT_CONFIG, PEFT_SAFETENSORS, export_peft, import_peft
from test_adapter_server import BASE_WORDS, make_adapter
from lora import LoRAConfig
from minigpt.checkpoint import model_fingerprint, save_model_dir
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer

CONFIG = LoRAConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])


@pytest.fixture
def exported(tmp_path):
    save_model_dir(tmp_path / "base", tiny_model(vocab_size=50), WordTokenizer(BASE_WORDS))
    make_adapter(tmp_path, "cooking", ["risotto", "saffron"], CONFIG, 1)
    export_peft(tmp_path / "cooking", tmp_path / "peft", use_safetensors=False)
    return tmp_path


def test_the_export_uses_peft_names_and_keys(exported):
    settings = json.loads((exported / "peft" / PEFT_CONFIG).read_text())
    assert settings["peft_type"] == "LORA" and settings["r"] == 2 and settings["lora_alpha"] == 4
    assert settings["bias"] == "none" and settings["fan_in_fan_out"] is False and settings["target_modules"] == ["q_proj", "v_proj"]
    keys = set(torch.load(exported / "peft" / PEFT_BIN, weights_only=True))
    assert keys == {f"base_model.model.blocks.{i}.attention.{p}.lora_{m}.weight" for i in range(2) for p in ("q_proj", "v_proj") for m in "AB"}


def test_export_then_import_gives_the_same_model(exported):
    import_peft(exported / "peft", exported / "back")
    original, _, _ = load_adapter(exported / "cooking", exported / "base")
    back, _, _ = load_adapter(exported / "back", exported / "base")
    idx = torch.randint(52, (2, 10))
    assert torch.equal(original(idx)[0], back(idx)[0])


def test_converting_a_missing_directory_is_one_line(exported, monkeypatch, capsys):
    status, _, err = run_main("peft_convert", ["from-peft", exported / "nothing", exported / "x"], monkeypatch, capsys)
    assert_one_line_error(status, err, "does not exist")


@pytest.mark.parametrize("direction, source", [("to-peft", "cooking"), ("from-peft", "peft")])
def test_a_destination_under_proc_is_one_line(exported, monkeypatch, capsys, direction, source):
    status, _, err = run_main("peft_convert", [direction, exported / source, "/proc/x", "--pretrained", exported / "base"],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "/proc/", "choose another destination")  # its positional argument, not a --out it lacks


@pytest.mark.parametrize("direction, source", [("to-peft", "cooking"), ("from-peft", "peft")])
def test_a_second_conversion_into_the_same_destination_is_refused(exported, monkeypatch, capsys, direction, source):
    from minigpt.plumbing.output_lock import output_lock

    with output_lock(exported / "out"):  # what a conversion in progress holds
        status, _, err = run_main("peft_convert", [direction, exported / source, exported / "out", "--pretrained",
                                                   exported / "base"], monkeypatch, capsys)
    assert_one_line_error(status, err, "another run")
    assert not (exported / "out").exists()


def test_writing_a_directory_where_no_entry_can_be_made_is_a_user_error(tmp_path):
    from minigpt.plumbing.atomic_writes import write_directory_atomically

    with pytest.raises(UserError, match="cannot write in /proc"):  # /proc passes the access check, then refuses mkdir
        write_directory_atomically("/proc/x", lambda directory: None)


def test_peft_loads_the_export_and_matches_the_adapter(exported):
    peft = pytest.importorskip("peft")
    safetensors_file = exported / "peft_st"
    export_peft(exported / "cooking", safetensors_file, use_safetensors=pytest.importorskip("safetensors") is not None)
    assert (safetensors_file / PEFT_SAFETENSORS).is_file()
    ours, tokenizer, _ = load_adapter(exported / "cooking", exported / "base")
    model = tiny_model(vocab_size=50)
    model.resize_token_embeddings(tokenizer.vocab_size)
    rows = torch.load(exported / "cooking" / "embedding_weights.pt", weights_only=True)
    with torch.no_grad():
        model.token_embedding.weight[rows["token_ids"]] = rows["rows"]
    for directory in (exported / "peft", safetensors_file):
        loaded = peft.PeftModel.from_pretrained(model, str(directory)).eval()
        idx = torch.randint(52, (2, 10))
        torch.testing.assert_close(loaded(idx)[0], ours(idx)[0], rtol=0, atol=1e-6)
        model = loaded.unload()


def test_a_dora_or_qlora_adapter_is_not_exported_as_plain_lora(tmp_path):
    """PEFT's LoRA files would silently drop DoRA's magnitude or QLoRA's 4-bit base: refused in one line."""
    for config, name in ((LoRAConfig(r=2, lora_alpha=4, use_dora=True), "DoRA"),
                         (LoRAConfig(r=2, lora_alpha=4, quantize_base="targets", quant_block_size=16), "QLoRA")):
        model = tiny_model(vocab_size=50)
        model.resize_token_embeddings(51)
        prepare_lora(model, 50, config)
        tokenizer = WordTokenizer(BASE_WORDS)
        tokenizer.extend(["risotto"])
        save_adapter(tmp_path / name, model, config, tokenizer, model_fingerprint(tiny_model(vocab_size=50)), 50)
        with pytest.raises(UserError, match=f"is a {name} adapter"):
            export_peft(tmp_path / name, tmp_path / f"{name}_peft")
        assert not (tmp_path / f"{name}_peft").exists()


def test_rslora_survives_the_peft_export_and_import(tmp_path):
    rslora = LoRAConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], use_rslora=True)  # scaling 2, not 1
    save_model_dir(tmp_path / "base", tiny_model(vocab_size=50), WordTokenizer(BASE_WORDS))
    make_adapter(tmp_path, "rs", ["risotto"], rslora, 3)
    export_peft(tmp_path / "rs", tmp_path / "peft", use_safetensors=False)
    assert json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())["use_rslora"] is True
    import_peft(tmp_path / "peft", tmp_path / "back", tmp_path / "base")
    original, _, config = load_adapter(tmp_path / "rs", tmp_path / "base")
    back, _, back_config = load_adapter(tmp_path / "back", tmp_path / "base")
    assert back_config.use_rslora and back_config.scaling == config.scaling == 2.0
    idx = torch.randint(51, (2, 10))
    assert torch.equal(original(idx)[0], back(idx)[0])


@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.update(r=3), "rank 2, the config says r=3"),
    (lambda s: s.update(target_modules="q_proj"), "target_modules must be a list"),
    (lambda s: s.update(target_modules=["q_proj", "v_proj", "k_proj"]), "no tensor adapts it"),
    (lambda s: s.update(target_modules=["q_proj"]), "is not one of the target_modules"),
])
def test_from_peft_refuses_a_config_that_disagrees_with_the_tensors(exported, change, fragment):
    settings = json.loads((exported / "peft" / PEFT_CONFIG).read_text())
    change(settings)
    (exported / "peft" / PEFT_CONFIG).write_text(json.dumps(settings))
    with pytest.raises(UserError, match=fragment):
        import_peft(exported / "peft", exported / "back", exported / "base")
    assert not (exported / "back").exists()


def test_from_peft_refuses_wrong_rows_or_vocabulary_and_non_dict_tensor_files(exported):
    rows = torch.load(exported / "peft" / "new_token_rows.pt", weights_only=True)
    torch.save({"token_ids": rows["token_ids"], "rows": rows["rows"][:1]}, exported / "peft" / "new_token_rows.pt")
    with pytest.raises(UserError, match="one row per new word"):
        import_peft(exported / "peft", exported / "back", exported / "base")
    torch.save([torch.zeros(2)], exported / "peft" / PEFT_BIN)
    with pytest.raises(UserError, match="must be a dictionary"):
        import_peft(exported / "peft", exported / "back", exported / "base")


def test_from_peft_loads_the_result_onto_the_base_before_reporting_success(exported, tmp_path):
    save_model_dir(tmp_path / "other_base", tiny_model(vocab_size=50, seed=1), WordTokenizer(BASE_WORDS))
    with pytest.raises(UserError, match="different base model"):
        import_peft(exported / "peft", exported / "back", tmp_path / "other_base")
    assert not (exported / "back").exists()
